"""Precision per device generation, a GradScaler sized for the loss, and squaring layers kept in fp32.

Why each piece exists (no GPU has run this yet: the CUDA branches follow the documented rules):

* `cuda_autocast_dtype(capability)`: `torch.cuda.is_bf16_supported()` is True on V100/T4 (it only checks
  that a bf16 tensor can be made), but cuDNN runs bf16 convolutions natively only from compute capability
  8.0 (Ampere); below that every conv falls back to a slow path. So bf16 from sm_80, fp16 (+ GradScaler in
  training) below, never decided by `is_bf16_supported`.
* `scaler_init_scale(reduction, pixels, input_range)`: with the released recipe's unnormalised summed
  loss the logit gradient is up to 1 per pixel, the 32× upsampler's backward multiplies by ≈1024 and every
  weight gradient sums activation × gradient over all pixels of the batch, so at GradScaler's default
  2^16 those fp16 gradients are inf (seen: score_fr's bias gradient 1.95e5 unscaled on one 500×500 image;
  weight gradients 1e5–1e6 on a width-1/16 net at 2×64×64 with Caffe-range input). The largest fp16
  gradient grows like scale × pixels × input range, so the initial scale is the largest power of two with
  scale × pixels × input_range ≤ 2^15 (half of fp16's max as headroom), clamped to [2^-16, 2^16]. That
  start is conservative; `SCALER_GROWTH_INTERVAL` (200 steps, default 2000) lets the scaler climb to its
  level in a few thousand steps, each try past it costing one skipped step. A "mean" loss is already
  divided by the pixel count and keeps 2^16.
* `fp32_region`: LRN squares its input; in fp16 any activation above 256 squares past 65504 and the
  5-channel window comes out inf → the output 0. Such layers run in fp32 with autocast off.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

# fp16: largest finite 65504; keep the largest expected gradient at or below 2^15.
FP16_HEADROOM = 2.0**15
SCALE_MIN, SCALE_MAX = 2.0**-16, 2.0**16
SCALER_GROWTH_INTERVAL = 200

DTYPE_NAMES = {None: "float32", torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def cuda_autocast_dtype(capability: tuple[int, int]) -> torch.dtype:
    """bf16 where cuDNN runs it natively (compute capability ≥ 8.0: A100, H100, H200, RTX 30xx+), else
    fp16 (V100 7.0, T4 7.5, P100 6.0), which those cards' tensor cores run."""
    return torch.bfloat16 if tuple(capability) >= (8, 0) else torch.float16


def dtype_name(dtype: torch.dtype | None) -> str:
    """"float32" / "bfloat16" / "float16": what timing.json and metrics.json record as the compute dtype."""
    return DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def input_range(pre: object | None) -> float:
    """Largest input magnitude a Preprocessing gives: ~255 for Caffe 0–255 minus mean, 1/std for
    torchvision's normalised 0–1 input, 1 when unknown."""
    if pre is None:
        return 1.0
    std = getattr(pre, "std", None)
    rng = float(getattr(pre, "scale", 1.0))
    if std:
        rng = rng / min(float(v) for v in std)
    return max(rng, 1.0)


def scaler_init_scale(reduction: str, pixels_per_batch: int, input_range: float = 1.0) -> float:
    """GradScaler's initial scale for a loss of `reduction` over batches of `pixels_per_batch` pixels whose
    inputs reach ±`input_range`."""
    if reduction != "sum":
        return SCALE_MAX
    p = max(int(pixels_per_batch), 1) * max(float(input_range), 1.0)
    s = 2.0 ** math.floor(math.log2(FP16_HEADROOM / p))
    return float(min(max(s, SCALE_MIN), SCALE_MAX))


def make_scaler(amp: torch.dtype | None, device: torch.device, reduction: str, pixels_per_batch: int,
                input_range: float = 1.0) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 training (any device: CPU fp16 autocast is how the tests check it), else None.
    bf16 has fp32's exponent range and needs none."""
    if amp != torch.float16:
        return None
    init = scaler_init_scale(reduction, pixels_per_batch, input_range)
    return torch.amp.GradScaler(device.type, init_scale=init,
                                growth_interval=SCALER_GROWTH_INTERVAL if reduction == "sum" else 2000)


@contextlib.contextmanager
def fp32_region(x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Autocast off and `x` in fp32 inside the block (for layers that square or exponentiate)."""
    with torch.autocast(x.device.type, enabled=False):
        yield x.float() if x.is_floating_point() and x.dtype != torch.float64 else x


__all__ = ["cuda_autocast_dtype", "dtype_name", "scaler_init_scale", "make_scaler",
           "input_range",
           "fp32_region", "FP16_HEADROOM"]
