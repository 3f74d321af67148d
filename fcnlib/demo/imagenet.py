"""ImageNet stand-ins: VGG16/AlexNet/GoogLeNet weights at reduced width, VGG16 pretrained on toy patches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .paint import (
    _ellipse,
    class_appearance,
    paint,
)


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class _Init:
    """torchvision-like init from one seeded generator: kaiming-normal (fan_out, relu) convs, zero
    biases, N(0, 0.01) linears, identity batch-norm. `fan_in=True` (the demo's files): He fan-in for
    convs and linears instead, so signals keep their size through the tiny 1/16-width nets."""

    def __init__(self, seed: int, fan_in: bool = False) -> None:
        import torch

        self.torch = torch
        self.g = torch.Generator().manual_seed(int(seed))
        self.sd: dict[str, Any] = {}
        self.fan_in = fan_in

    def conv(self, name: str, cin: int, cout: int, k: int, bias: bool = True) -> None:
        std = (2.0 / ((cin if self.fan_in else cout) * k * k)) ** 0.5
        self.sd[f"{name}.weight"] = self.torch.randn(cout, cin, k, k, generator=self.g) * std
        if bias:
            self.sd[f"{name}.bias"] = self.torch.zeros(cout)

    def linear(self, name: str, cin: int, cout: int) -> None:
        std = (2.0 / cin) ** 0.5 if self.fan_in else 0.01
        self.sd[f"{name}.weight"] = self.torch.randn(cout, cin, generator=self.g) * std
        self.sd[f"{name}.bias"] = self.torch.zeros(cout)

    def bn(self, name: str, c: int) -> None:
        t = self.torch
        self.sd.update({f"{name}.weight": t.ones(c), f"{name}.bias": t.zeros(c), f"{name}.running_mean":
                        t.zeros(c), f"{name}.running_var": t.ones(c),
                        f"{name}.num_batches_tracked": t.tensor(0, dtype=t.long)})

    def basic(self, name: str, cin: int, cout: int, k: int) -> None:
        self.conv(f"{name}.conv", cin, cout, k, bias=False)
        self.bn(f"{name}.bn", cout)


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
GOOGLENET_CFG = {  # in torchvision's order: ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj
    "inception3a": (64, 96, 128, 16, 32, 32), "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64), "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64), "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128), "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


def vgg16_state_dict(width: float, seed: int = 0, fan_in: bool = False) -> dict[str, Any]:
    """torchvision vgg16 keys (features.N, classifier.0/3/6) with channels round(c·width), min 1."""
    init, cin, idx = _Init(seed, fan_in), 3, 0
    for v in VGG16_CFG:
        if v == "M":
            idx += 1
            continue
        init.conv(f"features.{idx}", cin, _ch(int(v), width), 3)
        cin, idx = _ch(int(v), width), idx + 2  # conv + relu
    fc = _ch(4096, width)
    init.linear("classifier.0", cin * 7 * 7, fc)
    init.linear("classifier.3", fc, fc)
    init.linear("classifier.6", fc, 1000)
    return init.sd


def alexnet_caffe_blobs(width: float, seed: int = 0, fan_in: bool = False) -> dict[str, list[np.ndarray]]:
    """Caffe AlexNet blobs (conv1..conv5 with the two-group conv2/4/5, fc6..fc8 as inner products), as in
    bvlc_alexnet.caffemodel — the FCN-AlexNet of Table 1 starts from Caffe's AlexNet, whose shapes
    torchvision's AlexNet does not share."""
    from ..models.vgg import scaled

    init = _Init(seed, fan_in)
    w = lambda c: scaled(c, width, multiple=2)  # noqa: E731
    convs = (("conv1", 3, w(96), 11, 1), ("conv2", w(96), w(256), 5, 2), ("conv3", w(256), w(384), 3, 1),
             ("conv4", w(384), w(384), 3, 2), ("conv5", w(384), w(256), 3, 2))
    for name, cin, cout, k, groups in convs:
        init.conv(name, cin // groups, cout, k)
    fc = scaled(4096, width)
    init.linear("fc6", w(256) * 6 * 6, fc)
    init.linear("fc7", fc, fc)
    init.linear("fc8", fc, 1000)
    names = [c[0] for c in convs] + ["fc6", "fc7", "fc8"]
    return {n: [init.sd[f"{n}.weight"].numpy(), init.sd[f"{n}.bias"].numpy()] for n in names}


def googlenet_state_dict(width: float, seed: int = 0, fan_in: bool = False) -> dict[str, Any]:
    """torchvision googlenet keys (conv1..3, inception3a..5b branches, aux1/aux2, fc), BasicConv2d = conv
    without bias + batch norm; input channels of each block = sum of the previous block's rounded outputs."""
    init = _Init(seed, fan_in)
    c64, c192 = _ch(64, width), _ch(192, width)
    init.basic("conv1", 3, c64, 7)
    init.basic("conv2", c64, c64, 1)
    init.basic("conv3", c64, c192, 3)
    cin, outs = c192, {}
    for name, (b1, b2r, b2, b3r, b3, b4) in GOOGLENET_CFG.items():
        b1, b2r, b2, b3r, b3, b4 = (_ch(x, width) for x in (b1, b2r, b2, b3r, b3, b4))
        init.basic(f"{name}.branch1", cin, b1, 1)
        init.basic(f"{name}.branch2.0", cin, b2r, 1)
        init.basic(f"{name}.branch2.1", b2r, b2, 3)
        init.basic(f"{name}.branch3.0", cin, b3r, 1)
        init.basic(f"{name}.branch3.1", b3r, b3, 3)  # torchvision uses 3×3 here, not the paper's 5×5
        init.basic(f"{name}.branch4.1", cin, b4, 1)
        cin = b1 + b2 + b3 + b4
        outs[name] = cin
    for aux, src in (("aux1", "inception4a"), ("aux2", "inception4d")):
        c128, c1024 = _ch(128, width), _ch(1024, width)
        init.basic(f"{aux}.conv", outs[src], c128, 1)
        init.linear(f"{aux}.fc1", c128 * 4 * 4, c1024)
        init.linear(f"{aux}.fc2", c1024, 1000)
    init.linear("fc", cin, 1000)
    return init.sd


PRETRAIN_CLASSES = 64  # "ImageNet" stand-in: classifies patches of the 64 class appearances
PRETRAIN_PATCH = 32      # px; one pool5 cell of VGG16


def pretrain_patches(rng: np.random.Generator, n: int, n_classes: int = PRETRAIN_CLASSES,
                     size: int = PRETRAIN_PATCH) -> tuple[np.ndarray, np.ndarray]:
    """The stand-in's "ImageNet": n RGB patches (N×size×size×3 uint8) and their class ids. Each patch
    shows an object of its class (an ellipse over the patch centre) on a region of another class, painted
    like the demo datasets (appearance ids 0..63: every colour of the grid, as the datasets use them)."""
    app = class_appearance(n_classes)
    labels = rng.integers(0, n_classes, n)
    other = rng.integers(0, n_classes, n)
    tiles = 8
    out = np.zeros((n, size, size, 3), np.uint8)
    for start in range(0, n, tiles * tiles):
        k = min(tiles * tiles, n - start)
        canvas = np.zeros((tiles * size, tiles * size), np.int64)
        for j in range(k):
            ty, tx = divmod(j, tiles)
            m = _ellipse(size, size, size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3),
                         rng.uniform(0.25, 0.6) * size, rng.uniform(0.25, 0.6) * size, rng.uniform(0, np.pi))
            tile = np.where(m, labels[start + j], other[start + j])
            canvas[ty * size:(ty + 1) * size, tx * size:(tx + 1) * size] = tile
        rgb = paint(canvas, app, rng)
        for j in range(k):
            ty, tx = divmod(j, tiles)
            out[start + j] = rgb[ty * size:(ty + 1) * size, tx * size:(tx + 1) * size]
    return out, labels


def _vgg_logits(p: dict[str, Any], x: Any) -> Any:
    """torchvision VGG16's forward on PRETRAIN_PATCH-px input (pool5 is 1×1, so the 7×7 average pool
    replicates it and fc6 sees the sum of its 7×7 weights), from a state dict of tensors."""
    import torch.nn.functional as F

    idx = 0
    for v in VGG16_CFG:
        if v == "M":
            x, idx = F.max_pool2d(x, 2), idx + 1
            continue
        x = F.relu(F.conv2d(x, p[f"features.{idx}.weight"], p[f"features.{idx}.bias"], padding=1))
        idx += 2
    x = x.flatten(1)
    w6 = p["classifier.0.weight"]
    x = F.relu(F.linear(x, w6.view(w6.shape[0], x.shape[1], -1).sum(-1), p["classifier.0.bias"]))
    x = F.relu(F.linear(x, p["classifier.3.weight"], p["classifier.3.bias"]))
    return F.linear(x, p["classifier.6.weight"], p["classifier.6.bias"])


def pretrain_vgg16(sd: dict[str, Any], steps: int, seed: int, batch: int = 32, lr: float = 1e-3,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A short "ImageNet pretraining" of the VGG16 stand-in (Adam, 1 thread, deterministic) on
    `pretrain_patches`, in torchvision's preprocessing — the FCNs then start, as in the paper, from a
    classifier whose features already tell the classes apart."""
    import torch
    import torch.nn.functional as F

    from ..models.preprocessing import TORCHVISION

    if steps <= 0:
        return sd
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng([seed, 99])
        n_pool = min(steps * batch, 8192)
        imgs, labels = pretrain_patches(rng, n_pool)
        mean = torch.tensor(TORCHVISION.mean).view(1, 3, 1, 1)
        std = torch.tensor(TORCHVISION.std).view(1, 3, 1, 1)
        x_all = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        y_all = torch.from_numpy(labels)
        p = {k: v.clone().requires_grad_(True) for k, v in sd.items()}
        opt = torch.optim.Adam(list(p.values()), lr=lr)
        order = torch.randperm(n_pool, generator=torch.Generator().manual_seed(seed))
        correct = seen = 0
        for step in range(steps):
            i0 = (step * batch) % n_pool
            idx = order[i0:i0 + batch]
            logits = _vgg_logits(p, x_all[idx])
            loss = F.cross_entropy(logits, y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y_all[idx]).sum())
            seen += len(idx)
            if log and (step + 1) % 100 == 0:
                log(f"demo: vgg16 stand-in pretraining step {step + 1}: loss {loss.item():.3f}, "
                    f"train acc {correct / max(seen, 1):.2f}")
                correct = seen = 0
        return {k: v.detach().clone() for k, v in p.items()}
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)


def _weights(out: Path, seed: int, width: float, pretrain_steps: int = 0,
             log: Callable[[str], None] | None = None) -> None:
    from ..io import atomic_save_torch
    from ..models.caffe import write_caffemodel

    vgg = pretrain_vgg16(vgg16_state_dict(width, seed * 1000 + 11, True), pretrain_steps, seed * 1000 + 11, log=log)
    atomic_save_torch(vgg, out / "vgg16.pth")
    atomic_save_torch(googlenet_state_dict(width, seed * 1000 + 13, True), out / "googlenet.pth")
    write_caffemodel(out / "bvlc_alexnet.caffemodel", alexnet_caffe_blobs(width, seed * 1000 + 12, True),
                     net_name="AlexNet")
