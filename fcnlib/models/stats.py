"""Geometry computed from the modules themselves: receptive field, stride, Caffe coord-map offsets.

Every blob is described by an affine map to input pixel coordinates, input = scale·index + shift (Caffe's
`coord_map`, kept exact with Fractions); a conv/pool with kernel k, stride s, pad p maps its output index y
to input index s·y + (k−1)/2 − p. The receptive field grows by (k−1)·scale per layer. Inception blocks are
walked branch by branch (the field is the widest branch).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import nn

from fcnlib.errors import ConfigError

_IDENTITY = (nn.ReLU, nn.Dropout, nn.Dropout2d, nn.LocalResponseNorm, nn.Identity, nn.BatchNorm2d)


@dataclass(frozen=True)
class Geom:
    scale: Fraction = Fraction(1)
    shift: Fraction = Fraction(0)
    rf: int = 1


def _pair(v, what: str) -> int:
    if isinstance(v, tuple):
        if len(set(v)) != 1:
            raise ConfigError(f"non-square {what} {v} is not supported by the geometry walker")
        v = v[0]
    return int(v)


def _kps(m: nn.Module) -> tuple[int, int, int] | None:
    if isinstance(m, nn.Conv2d):
        if _pair(m.dilation, "dilation") != 1:
            raise ConfigError(f"dilated conv {m} is not supported by the geometry walker")
        return _pair(m.kernel_size, "kernel"), _pair(m.stride, "stride"), _pair(m.padding, "padding")
    if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
        s = m.stride if m.stride is not None else m.kernel_size
        return _pair(m.kernel_size, "kernel"), _pair(s, "stride"), _pair(m.padding, "padding")
    if isinstance(m, _IDENTITY):
        return None
    raise ConfigError(f"geometry walker does not know layer type {type(m).__name__}")


def step(g: Geom, m: nn.Module) -> Geom:
    """Geometry of a layer's output from that of its input."""
    if hasattr(m, "branches"):
        outs = [chain(g, br) for br in m.branches()]
        if len({(o.scale, o.shift) for o in outs}) != 1:
            raise ConfigError(f"{type(m).__name__} branches are misaligned; cannot concatenate them")
        return Geom(outs[0].scale, outs[0].shift, max(o.rf for o in outs))
    if isinstance(m, nn.Sequential):
        return chain(g, list(m))
    kps = _kps(m)
    if kps is None:
        return g
    k, s, p = kps
    return Geom(g.scale * s, g.shift + g.scale * (Fraction(k - 1, 2) - p), g.rf + (k - 1) * int(g.scale))


def chain(g: Geom, layers) -> Geom:
    for m in layers:
        g = step(g, m)
    return g


def upsample(g: Geom, k: int, s: int, p: int = 0) -> Geom:
    """Geometry after a transposed convolution (inverse of the conv map)."""
    return Geom(g.scale / s, g.shift - g.scale * (Fraction(k - 1, 2) - p) / s, g.rf)


def crop_offset(cropped: Geom, reference: Geom, what: str = "crop") -> int:
    """Top-left offset that aligns `cropped` with `reference` (Caffe Crop layer)."""
    if cropped.scale != reference.scale:
        raise ConfigError(f"{what}: blobs have different strides ({cropped.scale} vs {reference.scale})")
    off = (reference.shift - cropped.shift) / cropped.scale
    if off.denominator != 1 or off < 0:
        raise ConfigError(f"{what}: offset {off} is not a non-negative integer; the layer geometry is wrong")
    return int(off)


def trunk_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of the feature trunk (conv1 … fc7 / inception_5b) of an FCN or a bare backbone."""
    if hasattr(model, "trunk_names"):
        return [(n, getattr(model, n)) for n in model.trunk_names]
    return list(model.named_children())


def net_stats(model: nn.Module) -> dict[str, int]:
    """Parameters, receptive field and max stride of the trunk, computed from the modules.

    `params` counts the trunk only (conv1 … fc7, or through inception_5b): score and deconvolution layers
    depend on the number of classes and are left out, as in the paper's Table 1 (VGG16 134M, AlexNet 57M,
    GoogLeNet 6M). For a late-fusion net the members' params add up and the field is the larger one.
    """
    if hasattr(model, "net_a") and hasattr(model, "net_b"):
        a, b = net_stats(model.net_a), net_stats(model.net_b)
        return {"params": a["params"] + b["params"], "receptive_field": max(a["receptive_field"],
                b["receptive_field"]), "max_stride": max(a["max_stride"], b["max_stride"])}
    layers = trunk_layers(model)
    g = chain(Geom(), [m for _, m in layers])
    params = sum(p.numel() for _, m in layers for p in m.parameters())
    return {"params": int(params), "receptive_field": int(g.rf), "max_stride": int(g.scale)}


def conv_flops(model: nn.Module, x_shape: tuple[int, ...]) -> int:
    """Multiply-adds ×2 of all conv / transposed-conv layers for one forward pass (via shape hooks)."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.ConvTranspose2d):
            # every input pixel scatters weight.numel() (= in × out/g × kh × kw) products
            total += 2 * inp[0].shape[0] * inp[0].shape[2] * inp[0].shape[3] * m.weight.numel()
        else:
            k = m.weight[0].numel()  # cin/g × kh × kw
            total += 2 * out.numel() * k

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    hs = [m.register_forward_hook(hook) for m in convs]
    try:
        with torch.no_grad():
            model(torch.zeros(x_shape, device=next(model.parameters()).device))
    finally:
        for h in hs:
            h.remove()
    return int(total)
