"""ImageNet stand-ins: VGG16/AlexNet/GoogLeNet classifier files at reduced width, VGG16 pretrained on toy patches.

The nets are fcnlib's own backbones (fcnlib.models VGG16, AlexNet, GoogLeNet), built on the meta device so
that building draws nothing from torch's global generator. Their layers give the shapes, `_Init` fills
them from one seeded generator in layer order, and fcnlib.models.surgery's layer maps name them as the
real downloads do (torchvision vgg16/googlenet state dicts, Caffe bvlc_alexnet blobs). Only what the
ImageNet classifiers have and the FCN backbones do not is typed here: the 1000-way fc8, and GoogLeNet's
BasicConv2d batch norms and auxiliary heads (the FCN drops them, paper §4.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnlib.demo.paint import class_appearance, ellipse_mask, paint
from fcnlib.files.io import atomic_save_torch
from fcnlib.models.alexnet import AlexNet
from fcnlib.models.caffe import write_caffemodel
from fcnlib.models.googlenet import GoogLeNet
from fcnlib.models.preprocessing import TORCHVISION
from fcnlib.models.surgery import classifier_layers, torchvision_layers
from fcnlib.models.vgg import VGG16, run_trunk, scaled


class _Init:
    """torchvision-like init from one seeded generator: kaiming-normal (fan_out, relu) convs, zero
    biases, N(0, 0.01) linears, identity batch-norm. `fan_in=True` (the demo's files): He fan-in for
    convs and linears instead, so signals keep their size through the tiny 1/16-width nets."""

    def __init__(self, seed: int, fan_in: bool = False) -> None:
        self.torch = torch
        self.g = torch.Generator().manual_seed(int(seed))
        self.sd: dict[str, Any] = {}
        self.fan_in = fan_in

    def weight(self, shape: Sequence[int], linear: bool = False) -> Any:
        """One weight drawn in the file's shape: out × in × k × k (conv) or out × in (linear)."""
        if self.fan_in or not linear:
            std = (2.0 / (math.prod(shape[1:]) if self.fan_in else shape[0] * math.prod(shape[2:]))) ** 0.5
        else:
            std = 0.01
        return self.torch.randn(*shape, generator=self.g) * std

    def linear(self, name: str, shape: Sequence[int]) -> None:
        self.sd[f"{name}.weight"] = self.weight(shape, linear=True)
        self.sd[f"{name}.bias"] = self.torch.zeros(shape[0])

    def basic(self, name: str, shape: Sequence[int]) -> None:
        """torchvision's BasicConv2d: conv without bias, then batch norm (identity here)."""
        t, c = self.torch, shape[0]
        self.sd[f"{name}.conv.weight"] = self.weight(shape)
        self.sd.update({f"{name}.bn.weight": t.ones(c), f"{name}.bn.bias": t.zeros(c), f"{name}.bn.running_mean":
                        t.zeros(c), f"{name}.bn.running_var": t.ones(c),
                        f"{name}.bn.num_batches_tracked": t.tensor(0, dtype=t.long)})


def conv_layers(net: Any) -> list[tuple[str, Any]]:
    """(layer name, Conv2d) of `net` in layer order."""
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]


def _classifier(make: Callable[[], Any]) -> Any:
    """`make()` (an fcnlib backbone) plus the ImageNet classifier's 1000-way fc8 as a 1×1 conv, which no
    FCN backbone has; built on the meta device, then given unfilled CPU storage."""
    with torch.device("meta"):
        net = make()
        net.add("fc8", nn.Conv2d(net.out_channels, 1000, 1))
    return net.to_empty(device="cpu")


def _fill(net: Any, init: _Init, linear: Collection[str]) -> None:
    """Every conv of `net` in layer order: weight from `init`, drawn out × in for the `linear` layers (the
    classifier file's fully connected layers), bias 0."""
    with torch.no_grad():
        for name, m in conv_layers(net):
            w = m.weight
            shape = (w.shape[0], w[0].numel()) if name in linear else tuple(w.shape)
            w.copy_(init.weight(shape, linear=name in linear).view(w.shape))
            m.bias.zero_()


def _file_weight(m: Any, linear: bool) -> Any:
    w = m.weight.detach()
    return w.reshape(w.shape[0], -1) if linear else w


def vgg16_net(width: float, seed: int = 0, fan_in: bool = False) -> Any:
    """fcnlib's VGG16 backbone as torchvision's classifier pads it (every conv pad 1, not FCN's conv1_1
    pad 100) plus fc8, filled by `_Init` in layer order."""
    net = _classifier(lambda: VGG16(width, conv1_pad=1))
    _fill(net, _Init(seed, fan_in), classifier_layers("vgg16"))
    return net


def vgg16_torchvision(net: Any) -> dict[str, Any]:
    """`vgg16_net`'s weights as torchvision's vgg16 state dict (features.N, classifier.0/3/6)."""
    fc, out = classifier_layers("vgg16"), {}
    for ours, tv in torchvision_layers("vgg16").items():
        m = net.get_submodule(ours)
        out[f"{tv}.weight"] = _file_weight(m, ours in fc).clone()
        out[f"{tv}.bias"] = m.bias.detach().clone()
    return out


def vgg16_state_dict(width: float, seed: int = 0, fan_in: bool = False) -> dict[str, Any]:
    """torchvision vgg16 keys (features.N, classifier.0/3/6) with channels round(c·width), min 1."""
    return vgg16_torchvision(vgg16_net(width, seed, fan_in))


def alexnet_caffe_blobs(width: float, seed: int = 0, fan_in: bool = False) -> dict[str, list[np.ndarray]]:
    """Caffe AlexNet blobs (conv1..conv5 with the two-group conv2/4/5, fc6..fc8 as inner products), as in
    bvlc_alexnet.caffemodel — the FCN-AlexNet of Table 1 starts from Caffe's AlexNet, whose shapes
    torchvision's AlexNet does not share. Our layer names are Caffe's (fcnlib.models.vgg)."""
    net = _classifier(lambda: AlexNet(width, conv1_pad=0))
    fc = classifier_layers("alexnet")
    _fill(net, _Init(seed, fan_in), fc)
    return {n: [_file_weight(m, n in fc).numpy(), m.bias.detach().numpy()] for n, m in conv_layers(net)}


def googlenet_state_dict(width: float, seed: int = 0, fan_in: bool = False) -> dict[str, Any]:
    """torchvision googlenet keys (conv1..3, inception3a..5b branches, aux1/aux2, fc) for fcnlib's
    GoogLeNet at `width`; BasicConv2d = conv without bias + batch norm."""
    with torch.device("meta"):
        net = GoogLeNet(width)
    init, tv = _Init(seed, fan_in), torchvision_layers("googlenet")
    fc = tv.pop("fc8")
    for ours, t in tv.items():
        cout, cin, k, _ = net.get_submodule(ours).weight.shape
        k = 3 if ours.endswith(".5x5") else k  # torchvision's "5x5" branch is 3×3 (surgery pads it to 5×5)
        init.basic(t, (cout, cin, k, k))
    for aux, src in (("aux1", "4a"), ("aux2", "4d")):  # the auxiliary classifiers of torchvision's layout
        c128, c1024 = scaled(128, width), scaled(1024, width)
        init.basic(f"{aux}.conv", (c128, net.get_submodule(f"inception_{src}").out_channels, 1, 1))
        init.linear(f"{aux}.fc1", (c1024, c128 * 4 * 4))
        init.linear(f"{aux}.fc2", (1000, c1024))
    init.linear(fc, (1000, net.out_channels))
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
            m = ellipse_mask(size, size, size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3),
                         rng.uniform(0.25, 0.6) * size, rng.uniform(0.25, 0.6) * size, rng.uniform(0, np.pi))
            tile = np.where(m, labels[start + j], other[start + j])
            canvas[ty * size:(ty + 1) * size, tx * size:(tx + 1) * size] = tile
        rgb = paint(canvas, app, rng)
        for j in range(k):
            ty, tx = divmod(j, tiles)
            out[start + j] = rgb[ty * size:(ty + 1) * size, tx * size:(tx + 1) * size]
    return out, labels


def vgg_logits(net: Any, x: Any) -> Any:
    """torchvision VGG16's forward on PRETRAIN_PATCH-px input, through `vgg16_net`'s layers: the conv trunk
    to pool5 (1×1 here), then the classifier as torchvision runs it. Its AdaptiveAvgPool2d(7) replicates
    the 1×1 pool5, so fc6 sees the sum of its 7×7 weights; fc7 and fc8 are fully connected. No dropout
    (the stand-in's pretraining never had any)."""
    x, _ = run_trunk(takewhile(lambda layer: layer[0] != "fc6", net.named_children()), x, ())
    x = x.flatten(1)
    w6 = net.fc6.weight
    x = F.relu(F.linear(x, w6.view(w6.shape[0], x.shape[1], -1).sum(-1), net.fc6.bias))
    x = F.relu(F.linear(x, net.fc7.weight.flatten(1), net.fc7.bias))
    return F.linear(x, net.fc8.weight.flatten(1), net.fc8.bias)


def pretrain_vgg16(net: Any, steps: int, seed: int, batch: int = 32, lr: float = 1e-3,
                   log: Callable[[str], None] | None = None) -> Any:
    """A short "ImageNet pretraining" of the VGG16 stand-in (`vgg16_net`, trained in place and returned;
    Adam, 1 thread, deterministic) on `pretrain_patches`, in torchvision's preprocessing — the FCNs then
    start, as in the paper, from a classifier whose features already tell the classes apart."""
    if steps <= 0:
        return net
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
        opt = torch.optim.Adam(list(net.parameters()), lr=lr)
        order = torch.randperm(n_pool, generator=torch.Generator().manual_seed(seed))
        correct = seen = 0
        for step in range(steps):
            i0 = (step * batch) % n_pool
            idx = order[i0:i0 + batch]
            logits = vgg_logits(net, x_all[idx])
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
        return net
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)


def write_weights(out: Path, seed: int, width: float, pretrain_steps: int = 0,
             log: Callable[[str], None] | None = None) -> None:
    vgg = pretrain_vgg16(vgg16_net(width, seed * 1000 + 11, True), pretrain_steps, seed * 1000 + 11, log=log)
    atomic_save_torch(vgg16_torchvision(vgg), out / "vgg16.pth")
    atomic_save_torch(googlenet_state_dict(width, seed * 1000 + 13, True), out / "googlenet.pth")
    write_caffemodel(out / "bvlc_alexnet.caffemodel", alexnet_caffe_blobs(width, seed * 1000 + 12, True),
                     net_name="AlexNet")
