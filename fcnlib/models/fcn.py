"""FCN-32s/16s/8s (and 8s at-once) on any backbone, with Caffe-exact crops computed from the geometry.

One `FCN` class covers every variant: the variant only decides which skip taps are fused (none, pool4,
pool4+pool3). Crop offsets come from `stats.crop_offset` over the actual modules, and for VGG16 at pad 100
they are checked against the authors' constants (32s 19; 16s 5/27; 8s 5/9/31).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnlib.errors import ConfigError
from fcnlib.models import stats
from fcnlib.models.alexnet import AlexNet
from fcnlib.models.googlenet import GoogLeNet
from fcnlib.models.vgg import VGG16, Backbone, run_trunk

VARIANTS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
BACKBONES = {"vgg16": VGG16, "alexnet": AlexNet, "googlenet": GoogLeNet}
_SKIPS = {"fcn32s": 0, "fcn16s": 1, "fcn8s": 2, "fcn8s-atonce": 2}
# names of the 2× upsamplers before each fusion, and of the final upsampler, per number of skips
_UP_NAMES = ("upscore2", "upscore_pool4")
_FINAL_NAME = {0: "upscore", 1: "upscore16", 2: "upscore8"}
ATONCE_SCALE = {"pool4": 0.01, "pool3": 0.0001}
CAFFE_OFFSETS = {"fcn32s": (19,), "fcn16s": (5, 27), "fcn8s": (5, 9, 31), "fcn8s-atonce": (5, 9, 31)}


def bilinear_kernel(size: int) -> np.ndarray:
    """2-D bilinear interpolation filter of a size×size deconvolution (the authors' surgery.upsample_filt)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.arange(size, dtype=np.float64)
    f = 1 - np.abs(og - center) / factor
    return np.outer(f, f).astype(np.float32)


def bilinear_(deconv: nn.ConvTranspose2d) -> None:
    """Bilinear init: channel i upsamples channel i only (off-diagonal filters zero)."""
    cin, cout, kh, kw = deconv.weight.shape
    if cin != cout or kh != kw:
        raise ConfigError(f"bilinear init needs a square C→C deconvolution, got {tuple(deconv.weight.shape)}")
    w = torch.zeros_like(deconv.weight)
    idx = torch.arange(cin)
    w[idx, idx] = torch.from_numpy(bilinear_kernel(kh))
    with torch.no_grad():
        deconv.weight.copy_(w)


def _score(cin: int, n: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, n, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def per_class_upsample(x: torch.Tensor, kern: torch.Tensor, stride: int,
                       crop: tuple[int, int, int] | None = None) -> torch.Tensor:
    """conv_transpose2d(x, W, stride) for a diagonal C×C weight W (W[c, c] = kern[c]), at C× fewer FLOPs;
    with `crop=(off, h, w)` only out[..., off:off+h, off:off+w] (FCN's final crop) is computed.

    Polyphase form: with q = ⌈k/s⌉, output block (i, j) (s×s pixels) is Σ_{a,b<q} x[i−a, j−b]·kern[as:, bs:]
    (each s×s tile of the zero-padded kernel), one small batched matmul per class, so every output pixel
    costs q² multiply-adds instead of C·q², and blocks outside the crop are never computed. Always fp32
    (autocast off): exact to fp32 rounding against the full C×C convolution, and no reduced-precision
    transposed-convolution kernel (oneDNN's bf16 one ran a 21-class k=64 upsampler in 5.9 s, fp32 0.14 s)."""
    n, c, h, w = x.shape
    k = kern.shape[-1]
    q = -(-k // stride)
    hb, wb = h + q - 1, w + q - 1  # output blocks
    full_h, full_w = (h - 1) * stride + k, (w - 1) * stride + k
    if crop is None:
        r0, r1, c0, c1 = 0, full_h, 0, full_w
    else:
        off, ch, cw = crop
        r0, r1, c0, c1 = off, min(off + ch, full_h), off, min(off + cw, full_w)
    by0, by1 = r0 // stride, min(hb, -(-r1 // stride))
    bx0, bx1 = c0 // stride, min(wb, -(-c1 // stride))
    dt = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast(x.device.type, enabled=False):
        kp = F.pad(kern.to(dt), (0, q * stride - k, 0, q * stride - k)).view(c, q, stride, q, stride)
        xp = F.pad(x.to(dt), (q - 1,) * 4)
        xs = torch.stack([torch.stack([xp[:, :, q - 1 - a + by0:q - 1 - a + by1, q - 1 - b + bx0:q - 1 - b + bx1]
                                       for b in range(q)], 2) for a in range(q)], 2)  # n c a b y x
        out = torch.einsum("ncabhw,carbt->nchrwt", xs, kp)
        out = out.reshape(n, c, (by1 - by0) * stride, (bx1 - bx0) * stride)
    ys, xs0 = r0 - by0 * stride, c0 - bx0 * stride
    return out[:, :, ys:ys + r1 - r0, xs0:xs0 + c1 - c0]


def _tracing() -> bool:
    """Inside torch.jit.trace or the TorchScript-based ONNX exporter (fcn export), where sizes must stay symbolic."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class Upsampler(nn.ConvTranspose2d):
    """C→C bias-free ConvTranspose2d (state-dict layout and names of Caffe's Deconvolution: weight C×C×k×k,
    so the authors' caffemodels and pytorch-fcn checkpoints load unchanged) that runs per class
    (`per_class_upsample`) when its weight is frozen (requires_grad False) and diagonal — the bilinear
    upsamplers: one interpolation kernel per class. A learned one (requires_grad) stays a full C×C one, and
    so does a frozen weight with any off-diagonal entry. The diagonal test is cached per weight version.
    `per_class = False` on an instance forces the full C×C convolution (the reference, bench/run.py)."""

    per_class = True

    def _diagonal(self) -> torch.Tensor | None:
        w = self.weight
        try:
            key: tuple | None = (w.data_ptr(), w._version, w.dtype, w.device)
        except RuntimeError:  # an inference tensor has no version counter: test every time
            key = None
        if key is None or getattr(self, "_diag_key", None) != key:
            diag = None
            c = w.shape[0]
            if (w.shape[1] == c and w.shape[2] == w.shape[3] and self.bias is None and self.groups == 1
                    and self.padding == (0, 0) and self.output_padding == (0, 0) and self.dilation == (1, 1)
                    and self.stride[0] == self.stride[1]):
                with torch.no_grad():
                    d = w.diagonal(dim1=0, dim2=1).permute(2, 0, 1)  # c k k
                    if int(torch.count_nonzero(w)) == int(torch.count_nonzero(d)):
                        diag = d.contiguous()
            self._diag_key, self._diag = key, diag
        return self._diag

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None,
                crop: tuple[int, int, int] | None = None) -> torch.Tensor:
        """`crop=(off, h, w)`: return only out[..., off:off+h, off:off+w] (computed alone where it can be)."""
        # Not under torch.compile (the cached diagonal test is data-dependent) nor under a trace (fcn export):
        # per_class_upsample's block ranges are Python integer arithmetic on the input's size, which a trace
        # records as constants of the example input; the full convolution + slice below keeps every size a
        # function of the input (its extra FLOPs are <1% of the net's)
        if self.per_class and not self.weight.requires_grad and output_size is None and x.dim() == 4 \
                and not torch.compiler.is_compiling() and not _tracing():
            d = self._diagonal()
            if d is not None:
                return per_class_upsample(x, d, self.stride[0], crop)
        out = super().forward(x, output_size)
        if crop is not None:
            off, h, w = crop
            out = out[:, :, off:off + h, off:off + w]
        return out


def _deconv(n: int, k: int, s: int, frozen: bool) -> nn.ConvTranspose2d:
    d = Upsampler(n, n, k, stride=s, bias=False)
    bilinear_(d)
    d.weight.requires_grad_(not frozen)
    return d


def _crop(x: torch.Tensor, off: int, ref: torch.Tensor) -> torch.Tensor:
    h, w = ref.shape[-2:]
    return x[:, :, off:off + h, off:off + w]


class FCN(nn.Module):
    """Trunk layers registered at top level (Caffe names) + per-head score/upsampling layers."""

    def __init__(self, backbone: Backbone, variant: str, heads: dict[str, int], single: bool,
                 arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch = dict(arch)
        self.variant = variant
        self.single = single  # forward returns a tensor, not a dict
        self.trunk_names = [n for n, _ in backbone.named_children()]
        for n, m in backbone.named_children():
            self.add_module(n, m)
        nskip = _SKIPS[variant]
        if nskip > len(backbone.skip_taps):
            raise ConfigError(f"{variant} needs skip layers {('pool4', 'pool3')[:nskip]} but the "
                              f"{arch['backbone']} FCN of the paper has only fcn32s; use variant fcn32s")
        self.taps = backbone.skip_taps[:nskip]
        self.tap_scale = {t: ATONCE_SCALE[t] for t in self.taps} if variant == "fcn8s-atonce" else {}
        self.heads = dict(heads)

        # --- geometry: where every blob sits in input pixels, hence the crop offsets and final kernel
        g, at = stats.Geom(), {}
        for n, m in backbone.named_children():
            g = stats.step(g, m)
            at[n] = g
        cur, offsets = g, []
        for t in self.taps:
            cur = stats.upsample(cur, 4, 2)
            offsets.append(stats.crop_offset(at[t], cur, f"score_{t} crop"))
        if cur.scale.denominator != 1:
            raise ConfigError(f"{variant}: stride {cur.scale} before the final upsampler is not an integer")
        f = int(cur.scale)
        # kernel 2f as in the VGG nets; 2f−1 where 2f would leave a half-pixel offset (FCN-AlexNet uses 63)
        k_final = 2 * f if (stats.upsample(cur, 2 * f, f).shift.denominator == 1) else 2 * f - 1
        offsets.append(stats.crop_offset(stats.upsample(cur, k_final, f), stats.Geom(), "final crop"))
        self.offsets = tuple(offsets)
        self.final_kernel, self.final_stride = k_final, f

        for h, n in self.heads.items():
            sfx = "" if single else f"_{h}"
            self.add_module(f"score_fr{sfx}", _score(backbone.out_channels, n))
            for i, t in enumerate(self.taps):
                self.add_module(f"{_UP_NAMES[i]}{sfx}", _deconv(n, 4, 2, frozen=False))
                self.add_module(f"score_{t}{sfx}", _score(backbone.tap_channels[t], n))
            self.add_module(f"{_FINAL_NAME[nskip]}{sfx}", _deconv(n, k_final, f, frozen=True))

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [(n, getattr(self, n)) for n in self.trunk_names]

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        feat, taps = run_trunk(self.trunk(), x, self.taps)
        return self.run_heads(feat, taps, x)

    def run_heads(self, feat: torch.Tensor, taps: dict[str, torch.Tensor], x: torch.Tensor
                  ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Score layers, skips and crops on the trunk's output — separate so that another way of running
        the trunk (fcnlib.runtime.fast's exact padding skip) reuses them unchanged. `x` only gives the crop size."""
        for t, s in self.tap_scale.items():
            taps[t] = taps[t] * s
        out = {}
        for h in self.heads:
            sfx = "" if self.single else f"_{h}"
            score = self._modules[f"score_fr{sfx}"](feat)
            for i, t in enumerate(self.taps):
                up = self._modules[f"{_UP_NAMES[i]}{sfx}"](score)
                skip = self._modules[f"score_{t}{sfx}"](taps[t])
                score = up + _crop(skip, self.offsets[i], up)
            final = self._modules[f"{_FINAL_NAME[len(self.taps)]}{sfx}"]
            if isinstance(final, Upsampler):  # only the cropped part is computed
                out[h] = final(score, crop=(self.offsets[-1], *x.shape[-2:]))
            else:
                out[h] = _crop(final(score), self.offsets[-1], x)
        return out[next(iter(out))] if self.single else out


def build_backbone(backbone: str = "vgg16", width: float = 1.0, in_channels: int = 3, **kw: Any) -> Backbone:
    if backbone not in BACKBONES:
        raise ConfigError(f"backbone={backbone!r}; use one of {sorted(BACKBONES)}")
    if not (isinstance(width, int | float) and 0 < width <= 4):
        raise ConfigError(f"width={width!r}; use a multiplier in (0, 4], 1.0 = the paper's net")
    if not (isinstance(in_channels, int) and in_channels >= 1):
        raise ConfigError(f"in_channels={in_channels!r}; use 3 (RGB/HHA), 1 (depth) or 4 (RGB-D)")
    return BACKBONES[backbone](width=float(width), in_channels=in_channels, **kw)


def build_fcn(variant: str, backbone: str = "vgg16", num_classes: int = 21, width: float = 1.0,
              in_channels: int = 3, heads: dict[str, int] | None = None) -> FCN:
    """The one model builder. `heads={"sem": 33, "geo": 3}` → forward returns {head: N×C×H×W logits}."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant={variant!r}; use one of {VARIANTS} (fcn32s-fixed = fcn32s + "
                          f"freeze_except_score)")
    if heads is not None:
        if not isinstance(heads, dict) or not heads or not all(
                isinstance(k, str) and k.isidentifier() and isinstance(v, int) and v >= 1
                for k, v in heads.items()):
            raise ConfigError(f"heads={heads!r}; use a dict of head name → number of classes, e.g. "
                              f"{{'sem': 33, 'geo': 3}}")
    elif not (isinstance(num_classes, int) and num_classes >= 1):
        raise ConfigError(f"num_classes={num_classes!r}; use a positive integer")
    arch = {"variant": variant, "backbone": backbone, "num_classes": num_classes, "width": float(width),
            "in_channels": in_channels, "heads": None if heads is None else dict(heads)}
    bb = build_backbone(backbone, width, in_channels)
    model = FCN(bb, variant, heads if heads is not None else {"score": num_classes}, heads is None, arch)
    if backbone == "vgg16" and model.offsets != CAFFE_OFFSETS[variant]:
        raise AssertionError(f"computed crop offsets {model.offsets} differ from Caffe's "
                             f"{CAFFE_OFFSETS[variant]} for {variant}")
    return model


def freeze_except_score(model: nn.Module) -> nn.Module:
    """FCN-32s-fixed: only the score layers learn (trunk and upsamplers frozen)."""
    for n, m in model.named_children():
        learn = n.startswith("score_")
        for p in m.parameters():
            p.requires_grad_(learn)
    return model


class LateFusion(nn.Module):
    """Sum of two nets' score maps (RGB-HHA): w_a·net_a(x[:, :split]) + w_b·net_b(x[:, split:])."""

    def __init__(self, net_a: nn.Module, net_b: nn.Module, split: int = 3,
                 weights: tuple[float, float] = (0.5, 0.5)) -> None:
        super().__init__()
        self.net_a, self.net_b, self.split = net_a, net_b, int(split)
        self.weights = (float(weights[0]), float(weights[1]))
        self.arch = {"fusion": "late", "members": [dict(getattr(net_a, "arch", {})),
                                                   dict(getattr(net_b, "arch", {}))],
                     "weights": list(self.weights), "split": self.split}

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        wa, wb = self.weights
        a, b = self.net_a(x[:, :self.split]), self.net_b(x[:, self.split:])
        if isinstance(a, dict):
            return {k: wa * a[k] + wb * b[k] for k in a}
        return wa * a + wb * b


def build_late_fusion(net_a: nn.Module, net_b: nn.Module, split: int = 3,
                      weights: tuple[float, float] = (0.5, 0.5)) -> LateFusion:
    ca = getattr(net_a, "arch", {}).get("in_channels", split)
    if ca != split:
        raise ConfigError(f"late fusion split={split} but the first net takes {ca} input channels")
    return LateFusion(net_a, net_b, split, weights)
