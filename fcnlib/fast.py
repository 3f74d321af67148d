"""Fast paths for FCN inference and training, each with a stated tolerance against the plain fp32 net.

What is here, which of it is on by default (FastFCN, inference_setup), and why:

* `autocast_dtype(device)`: bf16 on CUDA from compute capability 8.0 (fp16 below: fcnlib.precision) and on
  CPUs whose oneDNN has
  native bf16 (AVX-512 BF16 / AMX). On CPUs without it (AVX2 only) bf16 convolutions are emulated and
  ~10× *slower* than fp32, so there the answer is None (stay fp32). Reduced precision changes logits by
  ~1e-2 relative; argmax agreement with fp32 is measured (≥98.5% of pixels, tests/test_fast.py).
* `use_channels_last(device)`: NHWC where it pays (CUDA, and CPU oneDNN in bf16). Same numbers.
* `padskip_forward(model, x)`: the **exact** padding skip. With conv1_1 pad 100 most of every early
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
* `winograd`: on CPU fp32 inference, 3×3 convolutions go through NNPACK's Winograd kernels (≈2× per conv on
  AVX2, 1.5× for the whole net; fp32 arithmetic, different rounding: ≈1e-5 relative per layer, 4e-6 of the
  largest logit on VGG16-FCN at 500×500, argmax 99.999% equal; tests allow 1e-4).
* `inference_setup` (eval, no grads, channels_last where it pays, cudnn.benchmark for fixed sizes only), `compile_model`
  (optional torch.compile with freezing: 1.26× fp32 on that CPU after a 46 s compile), `malloc_env` /
  `tune_malloc` (glibc keeps big freed buffers: otherwise ~9M page faults per 500×500 training step).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------------
# device capabilities and settings


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 convolutions natively (AVX-512 BF16 or AMX), i.e. faster than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """Reduced-precision dtype worth autocasting to on `device`, or None to stay in fp32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        # per generation (fcnlib.precision): bf16 only where cuDNN runs it natively (sm_80+), else fp16
        from .precision import device_autocast_dtype

        return device_autocast_dtype(dev)
    if dev.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def use_channels_last(device: torch.device | str) -> bool:
    """NHWC pays with cuDNN and with oneDNN's bf16 kernels; on fp32 AVX2 CPUs it is a wash, and the exact
    padding skip + NNPACK want NCHW there."""
    dev = torch.device(device)
    return dev.type == "cuda" or (dev.type == "cpu" and cpu_has_native_bf16())


def winograd_available(device: torch.device | str) -> bool:
    """NNPACK Winograd 3×3 convolutions: CPU only, fp32, and worth it only without native bf16."""
    dev = torch.device(device)
    return dev.type == "cpu" and not cpu_has_native_bf16() and bool(torch._nnpack_available())


@contextlib.contextmanager
def autocast(device: torch.device | str, dtype: torch.dtype | None | str = "auto") -> Iterator[None]:
    """torch.autocast with the device's best dtype ("auto"), a given one, or disabled (None)."""
    dev = torch.device(device)
    dt = autocast_dtype(dev) if dtype == "auto" else dtype
    with torch.autocast(dev.type, dtype=dt or torch.float32, enabled=dt is not None):
        yield


def inference_setup(model: nn.Module, device: torch.device | str, fixed_size: bool = False) -> nn.Module:
    """eval, no parameter grads, channels_last where it pays; cudnn.benchmark only for `fixed_size` inputs
    (timing): evaluation at native sizes would re-tune ~50 conv plans for each of hundreds of H×W."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if use_channels_last(dev):
        model = model.to(memory_format=torch.channels_last)
    if dev.type == "cuda":
        from .determinism import deterministic_requested

        torch.backends.cudnn.benchmark = bool(fixed_size) and not deterministic_requested()
    return model


def compile_model(model: nn.Module, example: torch.Tensor, freezing: bool = True,
                  dtype: torch.dtype | None = None) -> tuple[Callable, float]:
    """torch.compile (inductor, optionally with weight freezing) → (callable, compile seconds).

    Optional: compiling VGG16-FCN takes tens of seconds on a CPU, worth it only for long evaluations.
    """
    import torch._inductor.config as icfg

    icfg.freezing = freezing
    fn = torch.compile(model)
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(example.device.type, dtype=dtype or torch.float32,
                                                enabled=dtype is not None):
        fn(example)
    return fn, time.perf_counter() - t0


MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(4 << 30), "MALLOC_TOP_PAD_": str(1 << 28)}


def malloc_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a training process: glibc malloc never unmaps big activation buffers, so each step
    reuses warm pages instead of faulting millions of fresh ones. Must be set before the process starts."""
    env = dict(os.environ if base is None else base)
    env.update(MALLOC_ENV)
    return env


def tune_malloc() -> bool:
    """The same as malloc_env, from inside a running process (glibc mallopt; affects later allocations):
    never mmap, hence never unmap, big buffers, and keep freed heap. Process-wide and one-way, so call it
    first thing in a training/evaluation process, not at import. False where it does not apply."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-4, 0)  # M_MMAP_MAX
        ok &= libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD (an int: the largest it takes)
        ok &= libc.mallopt(-2, 256 << 20)  # M_TOP_PAD
        return bool(ok)
    except (OSError, AttributeError):
        return False


# ---------------------------------------------------------------------------------------------------
# exact padding skip


# A layer whose non-constant part covers at least this fraction of its output runs dense: below it the
# skipped FLOPs outweigh the extra fill/copy traffic (measured on VGG16-FCN at 500×500: conv1, conv2 skip).
DENSE_ABOVE = 0.56
# Training defaults, measured (VGG16-FCN, 2-core AVX2 CPU, fwd+bwd+SGD): the skip is exact in training too
# (gradients equal in float64) but 2.7× *slower* there — autograd saves and clones the full-size maps its
# slice assignments write — and a Winograd forward did not change the step time (backward dominates).
PADSKIP_TRAIN = False
WINOGRAD_TRAIN = False
# Inference: exact, but measured 0.77–1.06× on that CPU (with or without Winograd), and unmeasured on GPUs
# and bf16 CPUs; so opt-in (FastFCN(padskip=True)) until a run of bench/run.py there says otherwise.
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


def _kps(m: nn.Module) -> tuple[int, int, int]:
    def one(v: Any) -> int:
        return int(v[0]) if isinstance(v, tuple) else int(v)

    s = m.stride if m.stride is not None else m.kernel_size
    return one(m.kernel_size), one(s), one(m.padding)


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


# NNPACK pays from 64 channels in and out (VGG16 at width 1: every 3×3 conv); on narrow nets (width 0.25:
# 16–128 channels) it was 0.76× of oneDNN for the whole net, so those convs stay on oneDNN.
WINOGRAD_MIN_CHANNELS = 64


def _nnpack_ok(x: torch.Tensor, w: torch.Tensor, winograd: bool) -> bool:
    return (winograd and x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
            and w.shape[-1] == 3 and w.shape[-2] == 3 and min(w.shape[0], w.shape[1]) >= WINOGRAD_MIN_CHANNELS
            and not torch.is_autocast_enabled("cpu"))


def _conv(conv: nn.Conv2d, x: torch.Tensor, pad: tuple[int, int, int, int], winograd: bool) -> torch.Tensor:
    """conv (padding given explicitly as left, right, top, bottom) on a slice; NNPACK Winograd for 3×3."""
    if conv.groups == 1 and _nnpack_ok(x, conv.weight, winograd) and pad[0] == pad[1] == pad[2] == pad[3] \
            and conv.stride in (1, (1, 1)) and min(x.shape[-2:]) + 2 * pad[0] >= 10:  # tiny maps: NNPACK fails
        return torch._nnpack_spatial_convolution(x.contiguous(), conv.weight, conv.bias, [pad[2], pad[0]])
    if any(pad):
        x = F.pad(x, pad)
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


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
    k, s, p = _kps(m)
    if pad_override is not None:
        p = pad_override
    ceil = bool(getattr(m, "ceil_mode", False))
    n, _, h, w = x.shape
    ho, wo = _out_size(h, k, s, p, ceil), _out_size(w, k, s, p, ceil)
    new = _propagate(reg, k, s, p, ho, wo, zero_pad=is_conv)

    def op(inp: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
        if is_conv:
            y = _conv(m, inp, pad, winograd)
            return torch.relu(y) if relu else y
        if any(pad):
            inp = F.pad(inp, pad, value=float("-inf"))
        return F.max_pool2d(inp, k, s, 0, ceil_mode=False)

    # the constant: the same op on a k×k patch of it (same kernels, same dtype under autocast)
    patch = c.view(1, -1, 1, 1).expand(1, c.shape[0], k, k).to(x.dtype if not is_conv else c.dtype)
    c_new = op(patch, (0, 0, 0, 0)).reshape(-1)

    if new.fraction() >= dense_above:  # mostly non-constant: one dense op
        if is_conv:
            y = _conv(m, x, (p, p, p, p), winograd)
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
    if not isinstance(first, nn.Conv2d) or _kps(first)[2] < _kps(first)[0]:
        raise ValueError("padskip_trunk: the first layer must be a Conv2d padding by ≥ its kernel size")
    p0 = _kps(first)[2]
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
            if isinstance(m, nn.Conv2d) and _kps(m)[0] == 3 and m.groups == 1 and m.stride in (1, (1, 1)):
                p = _kps(m)[2]
                x = _conv(m, x, (p, p, p, p), winograd)
            else:
                x = m(x)
        if name in taps:
            feats[name] = x
        i += 1
    return x, feats


def padskip_forward(model: nn.Module, x: torch.Tensor, winograd: bool | None = None,
                    dense_above: float = DENSE_ABOVE) -> torch.Tensor | dict[str, torch.Tensor]:
    """FCN forward (any variant, single or multi-head) whose trunk runs with the exact padding skip."""
    feat, taps = padskip_trunk(model, x, tuple(model.taps), winograd, dense_above)
    return model.run_heads(feat, taps, x)


def _padded_first(model: nn.Module) -> bool:
    """An fcnlib FCN whose first conv pads by ≥ its kernel (FCN's pad 100): padskip_forward can run it."""
    names = getattr(model, "trunk_names", None)
    if not names or not hasattr(model, "heads"):
        return False
    first = getattr(model, names[0])
    return isinstance(first, nn.Conv2d) and _kps(first)[2] >= _kps(first)[0]


def supports_padskip(model: nn.Module) -> bool:
    """FCN on a VGG-style trunk whose first conv pads by ≥ its kernel (the skip then pays and is exact)."""
    return _padded_first(model) and all(
        isinstance(getattr(model, n), nn.Conv2d | nn.ReLU | nn.MaxPool2d | nn.Dropout) for n in model.trunk_names)


class FastFCN(nn.Module):
    """Wraps a built FCN: forward under the device's autocast, with the exact padding skip and Winograd
    where they were measured to pay (bench/run.py). Parameters, state dict and train/eval mode are the
    wrapped model's; outputs are fp32.

    amp: "auto" (autocast_dtype of the input's device), a dtype, or None (fp32).
    padskip: None = the measured defaults PADSKIP_TRAIN / PADSKIP_INFER (both off: on a 2-core AVX2 CPU the
    skip's fills and copies of full-size maps cost about what it saves, and dense Winograd, 1.6×, beat
    skip + Winograd, 1.45×); True forces it where the model supports it.
    winograd: None = auto (winograd_available); inference only unless WINOGRAD_TRAIN.
    """

    def __init__(self, model: nn.Module, amp: torch.dtype | None | str = "auto", padskip: bool | None = None,
                 winograd: bool | None = None) -> None:
        super().__init__()
        self.model = model
        self.amp = amp
        self.winograd = winograd
        ok = supports_padskip(model)
        self.dense_ok = _padded_first(model)
        self.padskip_train = ok and (PADSKIP_TRAIN if padskip is None else padskip)
        self.padskip_infer = ok and (padskip if padskip is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        dt = autocast_dtype(x.device) if self.amp == "auto" else self.amp
        wino = (winograd_available(x.device) if self.winograd is None else self.winograd) and self.dense_ok
        training = self.model.training and torch.is_grad_enabled()
        skip = self.padskip_train if training else (
            PADSKIP_INFER if self.padskip_infer is None else self.padskip_infer)
        wino = wino and (WINOGRAD_TRAIN or not training)
        with torch.autocast(x.device.type, dtype=dt or torch.float32, enabled=dt is not None):
            if skip:
                out = padskip_forward(self.model, x, wino)
            elif wino:
                out = padskip_forward(self.model, x, True, dense_above=0.0)  # dense, Winograd 3×3 convs
            else:
                out = self.model(x)
        if isinstance(out, dict):
            return {k: v.float() for k, v in out.items()}
        return out.float()
