"""The training input pipeline across process boundaries: compact labels, batches built in shared memory,
/dev/shm checked before workers start.

* Labels travel as uint8 (class ids < 255, void 255: every dataset here; 8× smaller than int64) and are
  widened to int64 on the device (`labels_to_device`).
* `collate_shared`: collate_pad, but inside a DataLoader worker the batch is written straight into a
  shared-memory tensor (as torch's default_collate does), so the worker queue does not copy ~95 MB per
  batch of 20 at 500² a second time. The main process pins it when training on CUDA.
* `shm_plan`: the batches in flight (workers × prefetch_factor) must fit in /dev/shm (Docker's default
  is 64 MB, smaller than 8 batches of 20 at 500²); if they do not, a clear message, the file_system
  sharing strategy (no file descriptor per tensor) and a prefetch factor that fits — or no workers.
* Images of 8-bit modalities (rgb, hha) travel as uint8 as stored (SegDataset raw=True) plus one
  validity channel, and `normalize_batch` applies each modality's Preprocessing on the device — the same
  float32 operations, so bitwise the CPU result; jitter/padding fill becomes exactly 0 again. 500² batch
  of 20: 20 MB instead of 60 MB of fp32. Depth (log of millimetres) still travels as fp32.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from typing import Any

import torch

from fcnlib.data import collate_pad
from fcnlib.files.io import IGNORE_INDEX

IGNORE = IGNORE_INDEX


def _shared_like(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An empty tensor of t's shape in shared memory (when in a worker), else ordinary memory."""
    dtype = dtype or t.dtype
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(t.shape, dtype=dtype)
    n = t.numel()
    storage = torch.UntypedStorage._new_shared(n * torch.empty((), dtype=dtype).element_size())
    return torch.empty(0, dtype=dtype).set_(storage, 0, t.shape)


def _compact(y: torch.Tensor) -> torch.Tensor:
    out = _shared_like(y, torch.uint8)
    out.copy_(y)
    return out


def collate_shared(batch: Sequence[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, Any]:
    """collate_pad, with uint8 labels, and (in a worker) both tensors in shared memory."""
    for _, lab in batch:
        for v in (lab.values() if isinstance(lab, dict) else (lab,)):
            if v.numel() and int(v.max()) > IGNORE:
                raise ValueError("collate_shared: label id above 255; uint8 labels cannot carry it")
    images, labels = collate_pad(batch)
    x = _shared_like(images)
    x.copy_(images)
    if isinstance(labels, dict):
        return x, {k: _compact(v) for k, v in labels.items()}
    return x, _compact(labels)


RAW_MODALITIES = ("rgb", "hha")


def raw_ok(modalities: Sequence[str]) -> bool:
    """Can these modalities travel as uint8 (SegDataset raw=True)?"""
    return all(m in RAW_MODALITIES for m in modalities)


def normalize_batch(x: torch.Tensor, pres: Sequence[Any]) -> torch.Tensor:
    """uint8 N×(C+1)×H×W (modalities in order + validity channel) → float32 N×C×H×W, on x's device."""
    valid = x[:, -1:] != 0
    parts, c0 = [], 0
    for p in pres:
        parts.append(p.apply_tensor(x[:, c0:c0 + p.channels]))
        c0 += p.channels
    out = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    return torch.where(valid, out, torch.zeros((), dtype=out.dtype, device=out.device))


def labels_to_device(y: Any, device: torch.device) -> Any:
    """uint8 labels → int64 on the device (the copy moves 1 byte per pixel, the widening happens there)."""
    if isinstance(y, dict):
        return {k: v.to(device, non_blocking=True).long() for k, v in y.items()}
    return y.to(device, non_blocking=True).long()


def shm_free_bytes(path: str = "/dev/shm") -> int | None:
    try:
        return int(shutil.disk_usage(path).free)
    except OSError:
        return None


def shm_plan(num_workers: int, batch_bytes: int, prefetch_factor: int = 2,
             free: int | None = -1) -> dict[str, Any]:
    """How many batches may be in flight: {"num_workers", "prefetch_factor", "strategy", "message"}."""
    free = shm_free_bytes() if free == -1 else free
    plan: dict[str, Any] = {"num_workers": num_workers, "prefetch_factor": prefetch_factor,
                            "strategy": None, "message": None}
    if num_workers <= 0 or free is None:
        return plan
    need = num_workers * prefetch_factor * batch_bytes * 2  # ×2: in flight + being filled
    if need <= free:
        return plan
    per = max(1, int(free // (2 * batch_bytes * num_workers)))
    mb = free / 2**20
    if free >= 2 * batch_bytes * num_workers:
        plan.update(prefetch_factor=min(per, prefetch_factor), strategy="file_system")
        what = f"prefetch_factor {plan['prefetch_factor']}"
    else:
        plan.update(num_workers=0, prefetch_factor=None)
        what = "no loader workers (num_workers 0)"
    plan["message"] = (f"/dev/shm: {mb:.0f} MiB free, {num_workers} workers × {prefetch_factor} batches of "
                       f"{batch_bytes / 2**20:.0f} MiB need {need / 2**20:.0f} MiB; using {what} — give the "
                       f"container more (docker run --shm-size=2g) or lower training.num_workers")
    return plan


def apply_shm_plan(plan: dict[str, Any]) -> None:
    if plan["strategy"]:
        torch.multiprocessing.set_sharing_strategy(plan["strategy"])
    if plan["message"]:
        print(f"fcn train: {plan['message']}", file=sys.stderr)


def batch_nbytes(batch_size: int, channels: int, h: int, w: int, raw: bool = False) -> int:
    """Bytes of one collated batch: images (uint8 + validity channel when raw, else fp32) + uint8 labels."""
    return batch_size * h * w * ((channels + 1 if raw else 4 * channels) + 1)


__all__ = ["collate_shared", "labels_to_device", "normalize_batch", "raw_ok", "RAW_MODALITIES", "shm_plan",
           "apply_shm_plan", "batch_nbytes", "shm_free_bytes"]
