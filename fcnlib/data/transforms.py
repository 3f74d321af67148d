"""Geometric augmentations shared by the dataset and tests: mirror, translation jitter, padding.

They act on CHW image tensors (already normalised, so 0 is the neutral fill value) and HW label
tensors (filled with the ignore value, so padded pixels never contribute to the loss).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from fcnlib.files.io import IGNORE_INDEX

IGNORE = IGNORE_INDEX
Array = TypeVar("Array", np.ndarray, torch.Tensor)


def hflip(t: Array) -> Array:
    """Mirror left-right along the last axis (CHW images and HW labels; numpy or torch)."""
    if isinstance(t, np.ndarray):
        return np.ascontiguousarray(t[..., ::-1])
    return t.flip(-1)


def translate(t: Array, dx: int, dy: int, fill: float | int) -> Array:
    """Shift content by (dx, dy) pixels (positive = right/down), keeping the size; uncovered pixels = fill."""
    h, w = t.shape[-2:]
    out = np.full_like(t, fill) if isinstance(t, np.ndarray) else torch.full_like(t, fill)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), w - max(0, dx))
    dst_x = slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = t[..., src_y, src_x]
    return out


def pad_to(t: torch.Tensor, h: int, w: int, fill: float | int) -> torch.Tensor:
    """Pad bottom/right to h×w (top-left anchored, like Caffe's crops) with `fill`."""
    th, tw = t.shape[-2:]
    if (th, tw) == (h, w):
        return t
    out = t.new_full((*t.shape[:-2], h, w), fill)
    out[..., :th, :tw] = t
    return out


def augment_pair(image: torch.Tensor, label: torch.Tensor | dict[str, torch.Tensor],
                 rng: np.random.Generator, mirror: bool = False, jitter: int = 0,
                 ignore_index: int = IGNORE) -> tuple[torch.Tensor, torch.Tensor | dict[str, torch.Tensor]]:
    """Apply one random mirror/translation, drawn from `rng`, identically to the image and its label(s).

    The draws are made in a fixed order whatever the options, so a given rng state always gives the
    same transform for the same options.
    """
    flip = bool(rng.integers(0, 2)) if mirror else False
    dx = int(rng.integers(-jitter, jitter + 1)) if jitter > 0 else 0
    dy = int(rng.integers(-jitter, jitter + 1)) if jitter > 0 else 0

    def one(t: torch.Tensor, fill: float | int) -> torch.Tensor:
        if not (flip or dx or dy):
            return t
        # numpy copies on CPU: torch's intra-op threads make these small copies slow on a busy machine
        cpu = t.device.type == "cpu"
        a = t.numpy() if cpu else t
        if flip:
            a = hflip(a)
        if dx or dy:
            a = translate(a, dx, dy, fill)
        return torch.from_numpy(a) if cpu else a

    image = one(image, 0.0)
    if isinstance(label, dict):
        label = {k: one(v, ignore_index) for k, v in label.items()}
    else:
        label = one(label, ignore_index)
    return image, label
