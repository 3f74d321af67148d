"""The **exact** padding skip (`padskip_forward`, `PadSkipFCN`). With conv1_1 pad 100 most of every early
activation lies far inside the zero padding, where it is a per-channel constant (conv of a constant is
a constant; so are ReLU and max-pool of one). Each layer's output is stored at full size, but the
convolution is computed only over the part that is not constant: the rectangle the image influences,
plus thin frames along the map edges where the next layer's own zero padding (pad 1) breaks the
constant. The constants come from the same conv on a k×k constant patch. The result equals the padded
net to fp32 rounding (≈1e-6 relative; proven on random weights over a sweep of sizes in the tests) and
gradients flow through it exactly (the constant is broadcast, so its weight gradient is summed over
the skipped area). It skips ≈30% of VGG16-FCN FLOPs at 500×500 — not the full 2× padding adds,
because from conv5 on the frames and the image's influence meet and every activation is non-constant.
Opt-in: on the 2-core AVX2 CPU measured, filling and copying full-size maps cost what it saves.

Kept out of fcnlib: FastFCN (evaluation, segment, Table 1 timing) never runs this code; bench/run.py
measures it through PadSkipFCN, and tests/test_fast.py keeps it exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fcnlib.runtime.fast import FastFCN, conv_padded, dense_layer, kernel_stride_pad, padded_first, winograd_available

# A layer whose non-constant part covers at least this fraction of its output runs dense: below it the
# skipped FLOPs outweigh the extra fill/copy traffic (measured on VGG16-FCN at 500×500: conv1, conv2 skip).
DENSE_ABOVE = 0.56
# Training default, measured (VGG16-FCN, 2-core AVX2 CPU, fwd+bwd+SGD): the skip is exact in training too
# (gradients equal in float64) but 2.7× *slower* there — autograd saves and clones the full-size maps its
# slice assignments write.
PADSKIP_TRAIN = False
# Inference: exact, but measured 0.77–1.06× on that CPU (with or without Winograd), and unmeasured on GPUs
# and bf16 CPUs; so opt-in (PadSkipFCN(padskip=True)) until a run of bench/run.py there says otherwise.
PADSKIP_INFER = False


@dataclass(frozen=True)
class _Region:
    """Where an activation is not a per-channel constant: rect R (half-open rows/cols) ∪ edge frame."""
    h: int
    w: int
    rect: tuple[int, int, int, int]  # y0, y1, x0, x1 (may be empty)
    frame: tuple[int, int, int, int]  # widths top, bottom, left, right

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Rectangles covering the non-constant set (overlaps are harmless: same values written twice)."""
        t, b, lft, r = self.frame
        out = [self.rect, (0, t, 0, self.w), (self.h - b, self.h, 0, self.w),
               (t, self.h - b, 0, lft), (t, self.h - b, self.w - r, self.w)]
        return [bx for bx in out if bx[1] > bx[0] and bx[3] > bx[2]]

    def fraction(self) -> float:
        t, b, lft, r = self.frame
        y0, y1, x0, x1 = self.rect
        ey, ex = max(0, y1 - y0), max(0, x1 - x0)
        return min(1.0, (ey * ex + (t + b) * self.w + (lft + r) * self.h) / (self.h * self.w))


def _out_size(n: int, k: int, s: int, p: int, ceil: bool) -> int:
    if ceil:
        o = math.ceil((n + 2 * p - k) / s) + 1
        return o - 1 if (o - 1) * s >= n + p else o
    return (n + 2 * p - k) // s + 1


def _propagate(reg: _Region, k: int, s: int, p: int, ho: int, wo: int, zero_pad: bool) -> _Region:
    """Non-constant region after a k/s/p window op. Windows reading zero padding are non-constant (conv);
    max-pool ignores out-of-range cells, so its windows at the edge stay constant."""
    def span(a: int, b: int, n_out: int) -> tuple[int, int]:
        if b <= a:
            return 0, 0
        lo = max(0, -((-(a - k + 1 + p)) // s))
        hi = min(n_out, (b - 1 + p) // s + 1)
        return (lo, hi) if hi > lo else (0, 0)

    def near(width: int) -> int:  # output rows whose window reads rows < width (or the zero padding)
        thr = width if width > 0 else (0 if zero_pad and p > 0 else None)
        return 0 if thr is None else max(0, (thr - 1 + p) // s + 1)

    def far(width: int, n_in: int, n_out: int) -> int:  # output rows reading rows ≥ n_in − width
        if width > 0:
            thr = n_in - width
        elif zero_pad:
            thr = n_in
        else:
            return 0
        first = -((-(thr - k + 1 + p)) // s)
        return max(0, n_out - max(first, 0))

    y0, y1, x0, x1 = reg.rect
    ry, rx = span(y0, y1, ho), span(x0, x1, wo)
    t, b, lft, r = reg.frame
    frame = (min(near(t), ho), min(far(b, reg.h, ho), ho), min(near(lft), wo), min(far(r, reg.w, wo), wo))
    rect = (ry[0], ry[1], rx[0], rx[1]) if ry[1] > ry[0] and rx[1] > rx[0] else (0, 0, 0, 0)
    return _Region(ho, wo, rect, frame)


def _window(x: torch.Tensor, box: tuple[int, int, int, int], k: int, s: int, p: int
            ) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Input slice an output box needs, and the (left, right, top, bottom) padding outside the map."""
    oy0, oy1, ox0, ox1 = box
    h, w = x.shape[-2:]
    iy0, iy1 = oy0 * s - p, (oy1 - 1) * s - p + k
    ix0, ix1 = ox0 * s - p, (ox1 - 1) * s - p + k
    sl = x[:, :, max(iy0, 0):min(iy1, h), max(ix0, 0):min(ix1, w)]
    return sl, (max(0, -ix0), max(0, ix1 - w), max(0, -iy0), max(0, iy1 - h))


def _full_like(c: torch.Tensor, n: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    fmt = torch.channels_last if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) \
        and not like.is_contiguous() else torch.contiguous_format
    out = torch.empty((n, c.shape[0], h, w), dtype=c.dtype, device=c.device, memory_format=fmt)
    out.copy_(c.view(1, -1, 1, 1).expand_as(out))
    return out


def _apply_layer(m: nn.Module, relu: bool, x: torch.Tensor, c: torch.Tensor, reg: _Region, pad_override: int | None,
                 winograd: bool, dense_above: float) -> tuple[torch.Tensor, torch.Tensor, _Region]:
    """One conv(+ReLU) or max-pool on a full-size map, computing only its non-constant part."""
    is_conv = isinstance(m, nn.Conv2d)
    k, s, p = kernel_stride_pad(m)
    if pad_override is not None:
        p = pad_override
    ceil = bool(getattr(m, "ceil_mode", False))
    n, _, h, w = x.shape
    ho, wo = _out_size(h, k, s, p, ceil), _out_size(w, k, s, p, ceil)
    new = _propagate(reg, k, s, p, ho, wo, zero_pad=is_conv)

    def op(inp: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
        if is_conv:
            y = conv_padded(m, inp, pad, winograd)
            return torch.relu(y) if relu else y
        if any(pad):
            inp = F.pad(inp, pad, value=float("-inf"))
        return F.max_pool2d(inp, k, s, 0, ceil_mode=False)

    # the constant: the same op on a k×k patch of it (same kernels, same dtype under autocast)
    patch = c.view(1, -1, 1, 1).expand(1, c.shape[0], k, k).to(x.dtype if not is_conv else c.dtype)
    c_new = op(patch, (0, 0, 0, 0)).reshape(-1)

    if new.fraction() >= dense_above:  # mostly non-constant: one dense op
        if is_conv:
            y = conv_padded(m, x, (p, p, p, p), winograd)
            y = torch.relu(y) if relu else y
        else:
            y = F.max_pool2d(x, k, s, p, ceil_mode=ceil)
        return y, c_new, _Region(ho, wo, (0, ho, 0, wo), (0, 0, 0, 0))
    out = _full_like(c_new, n, ho, wo, x)
    for box in new.boxes():
        sl, pad = _window(x, box, k, s, p)
        out[:, :, box[0]:box[1], box[2]:box[3]] = op(sl, pad)
    return out, c_new, new


def padskip_trunk(model: nn.Module, x: torch.Tensor, taps: tuple[str, ...] = (), winograd: bool | None = None,
                  dense_above: float = DENSE_ABOVE) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The trunk of a VGG-style FCN (conv/ReLU/max-pool/dropout) with the exact padding skip.

    Returns (last activation, {tap: activation}) like fcnlib.models.vgg.run_trunk. The first conv must
    pad by at least its kernel size (FCN's pad 100); other layer types fall back to the plain module.
    """
    layers = [(n, getattr(model, n)) for n in model.trunk_names] if hasattr(model, "trunk_names") \
        else list(model.named_children())
    if winograd is None:
        winograd = winograd_available(x.device)
    feats: dict[str, torch.Tensor] = {}
    first = layers[0][1]
    if not isinstance(first, nn.Conv2d) or kernel_stride_pad(first)[2] < kernel_stride_pad(first)[0]:
        raise ValueError("padskip_trunk: the first layer must be a Conv2d padding by ≥ its kernel size")
    p0 = kernel_stride_pad(first)[2]
    n, cin, h, w = x.shape
    x = F.pad(x, (p0, p0, p0, p0))
    c = torch.zeros(cin, dtype=x.dtype, device=x.device)
    reg: _Region | None = _Region(h + 2 * p0, w + 2 * p0, (p0, p0 + h, p0, p0 + w), (0, 0, 0, 0))
    i = 0
    while i < len(layers):
        name, m = layers[i]
        fuse = isinstance(m, nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1][1], nn.ReLU)
        if reg is not None and (isinstance(m, nn.Conv2d) and m.dilation in (1, (1, 1)) or
                                isinstance(m, nn.MaxPool2d) and m.dilation in (1, (1, 1))):
            x, c, reg = _apply_layer(m, fuse, x, c, reg, 0 if i == 0 else None, winograd, dense_above)
            if reg.fraction() >= 1.0:
                reg = None  # everything non-constant from here on: plain layers
            if fuse:
                feats_name = layers[i + 1][0]
                i += 1
                if feats_name in taps:
                    feats[feats_name] = x
        elif reg is not None and isinstance(m, nn.ReLU):
            x, c = torch.relu(x), torch.relu(c)
        elif reg is not None and isinstance(m, nn.Dropout | nn.Identity) and not (m.training and
                                                                                 isinstance(m, nn.Dropout)):
            pass
        else:
            reg = None
            x = dense_layer(m, x, winograd)
        if name in taps:
            feats[name] = x
        i += 1
    return x, feats


def padskip_forward(model: nn.Module, x: torch.Tensor, winograd: bool | None = None,
                    dense_above: float = DENSE_ABOVE) -> torch.Tensor | dict[str, torch.Tensor]:
    """FCN forward (any variant, single or multi-head) whose trunk runs with the exact padding skip."""
    feat, taps = padskip_trunk(model, x, tuple(model.taps), winograd, dense_above)
    return model.run_heads(feat, taps, x)


def supports_padskip(model: nn.Module) -> bool:
    """FCN on a VGG-style trunk whose first conv pads by ≥ its kernel (the skip then pays and is exact)."""
    return padded_first(model) and all(
        isinstance(getattr(model, n), nn.Conv2d | nn.ReLU | nn.MaxPool2d | nn.Dropout) for n in model.trunk_names)




class PadSkipFCN(FastFCN):
    """FastFCN with the exact padding skip where the model supports it (supports_padskip).

    padskip: None = the measured defaults PADSKIP_TRAIN / PADSKIP_INFER (both off: on a 2-core AVX2 CPU the
    skip's fills and copies of full-size maps cost about what it saves, and dense Winograd, 1.6×, beat
    skip + Winograd, 1.45×); True forces it. Without the skip it is FastFCN.
    """

    def __init__(self, model: nn.Module, amp: torch.dtype | None | str = "auto", padskip: bool | None = None,
                 winograd: bool | None = None) -> None:
        super().__init__(model, amp, winograd)
        ok = supports_padskip(model)
        self.padskip_train = ok and (PADSKIP_TRAIN if padskip is None else padskip)
        self.padskip_infer = ok and (padskip if padskip is not None else None)

    def _forward(self, x: torch.Tensor, wino: bool, training: bool) -> torch.Tensor | dict[str, torch.Tensor]:
        skip = self.padskip_train if training else (
            PADSKIP_INFER if self.padskip_infer is None else self.padskip_infer)
        if skip:
            return padskip_forward(self.model, x, wino)
        return super()._forward(x, wino, training)
