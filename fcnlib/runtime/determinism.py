"""cuDNN autotuning and the `deterministic` setting, resolved by one function a CPU test can check.

* cudnn.benchmark tunes ~50 conv plans (forward, backward-data, backward-filter) per distinct input size;
  it pays only when sizes are fixed. Batch-1 training and evaluation at native sizes see hundreds of
  H×W (PASCAL) and past ~200 the plan cache evicts and re-tunes, so there it is off.
* `deterministic: true` (config `training.deterministic`) turns on every switch CUDA needs for bitwise
  repeatable training: benchmark off, cudnn.deterministic, torch.use_deterministic_algorithms(True),
  TF32 off for convolutions and matmuls, and CUBLAS_WORKSPACE_CONFIG=:4096:8 (cuBLAS refuses
  deterministic mode without it; it must be set before the first cuBLAS call, so `apply_switches`
  runs before the model moves to the GPU). Every layer the nets use has a deterministic kernel: LRN
  is written without avg_pool3d, whose CUDA backward has none (fcnlib.models.alexnet.CaffeLRN).
On CPU the kernels are already deterministic for a fixed thread count; the switches are harmless there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from fcnlib.errors import DataError
from fcnlib.files.io import image_size

CUBLAS_WORKSPACE = ":4096:8"
_ENV = "FCN_DETERMINISTIC"


def resolve_switches(device_type: str, deterministic: bool, fixed_sizes: bool) -> dict[str, Any]:
    """The backend switches for a run: {"cudnn_benchmark", "cudnn_deterministic",
    "deterministic_algorithms", "tf32", "cublas_workspace_config"} (the last None = leave as is)."""
    cuda = device_type == "cuda"
    if deterministic:
        return {"cudnn_benchmark": False, "cudnn_deterministic": True, "deterministic_algorithms": True,
                "tf32": False, "cublas_workspace_config": CUBLAS_WORKSPACE}
    return {"cudnn_benchmark": bool(cuda and fixed_sizes), "cudnn_deterministic": False,
            "deterministic_algorithms": False, "tf32": None, "cublas_workspace_config": None}


def apply_switches(sw: Mapping[str, Any]) -> None:
    """Set the switches `resolve_switches` returned (process-wide: a training or evaluation process)."""
    if sw.get("cublas_workspace_config"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", str(sw["cublas_workspace_config"]))
    torch.backends.cudnn.benchmark = bool(sw["cudnn_benchmark"])
    torch.backends.cudnn.deterministic = bool(sw["cudnn_deterministic"])
    if sw["deterministic_algorithms"]:
        torch.use_deterministic_algorithms(True)
        os.environ[_ENV] = "1"
    if sw.get("tf32") is not None:
        # legacy flags: torch ≥ 2.9 maps them onto fp32_precision ("ieee" when False)
        torch.backends.cuda.matmul.allow_tf32 = bool(sw["tf32"])
        torch.backends.cudnn.allow_tf32 = bool(sw["tf32"])


def deterministic_requested() -> bool:
    """True in a process where the deterministic setting was applied (evaluation then keeps benchmark off)."""
    return os.environ.get(_ENV) == "1" or torch.are_deterministic_algorithms_enabled()


def fixed_input_size(paths: Iterable[Path], limit: int = 20000) -> bool:
    """True when every image (header only, PIL) has one size: then cudnn.benchmark tunes once and pays.
    More than `limit` files: False (not worth scanning; benchmark stays off)."""
    size = None
    for k, p in enumerate(paths):
        if k >= limit:
            return False
        try:
            s = image_size(p)
        except DataError:  # the loader reports the file properly; here it only means "not one size"
            return False
        if size is None:
            size = s
        elif s != size:
            return False
    return size is not None


__all__ = ["resolve_switches", "apply_switches", "deterministic_requested", "fixed_input_size",
           "CUBLAS_WORKSPACE"]
