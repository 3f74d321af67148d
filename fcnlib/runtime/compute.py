"""Where and how a job computes, decided once: the device, the autocast dtype and the memory format.

`resolve_runtime(device, amp, channels_last)` turns the config's settings (`device`, `training.amp`,
`training.channels_last`; `fcn segment/evaluate --device/--precision`) and the host into a frozen
`Runtime` that training, validation, evaluation, timing and segmentation are handed. The rules live here
only:

* device: "auto" → a CUDA GPU when one is usable (the claimed one / the rank's, given `index`), else the
  CPU; an explicit CUDA device on a box without CUDA is a ConfigError (checked at config validation too,
  `check_device`), never a silent CPU fallback.
* dtype ("auto"): on CUDA bf16 from compute capability 8.0, fp16 below (fcnlib.runtime.precision says why); on a
  CPU bf16 only where oneDNN runs it natively (AVX-512 BF16 / AMX) — emulated bf16 is ~10× slower than
  fp32 — else fp32. "off"/"fp32" is fp32, "bf16"/"fp16" force that dtype.
* channels_last ("auto"): NHWC with cuDNN and on CPUs with native bf16 (oneDNN's NHWC kernels); on other
  CPUs it is a wash and NNPACK (fcnlib.runtime.fast's Winograd) wants NCHW.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from fcnlib.errors import ConfigError
from fcnlib.runtime.precision import cuda_autocast_dtype, dtype_name

AMP_DEFAULT = "auto"
AMP_CHOICES = ("auto", "off", "bf16", "fp16")  # the config's spelling (training.amp)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # the CLI's spelling (--precision); fp32 = amp "off"
CHANNELS_LAST_DEFAULT = "auto"
CHANNELS_LAST_CHOICES = ("auto", True, False)
_FORCED = {"off": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 convolutions natively (AVX-512 BF16 or AMX), i.e. faster than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str | torch.device = "auto", index: int | None = None) -> torch.device:
    """"auto" (or "") → cuda[:index] when CUDA is usable, else CPU; "cuda" → cuda[:index]; "cpu" and
    "cuda:N" as given. `index`: the GPU this job claimed / this rank's. CUDA only where it exists
    (ConfigError otherwise: a run meant for a GPU would take days without saying)."""
    if isinstance(device, torch.device):
        dev = device
    else:
        name = str(device).strip().lower()
        if name in ("", "auto"):
            if not torch.cuda.is_available():
                return torch.device("cpu")
            return torch.device("cuda", index % max(torch.cuda.device_count(), 1)) if index is not None \
                else torch.device("cuda")
        if name == "cuda" and index is not None:
            name = f"cuda:{index}"
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise ConfigError(f"device={device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!s} requested but CUDA is not available here; use device=auto or cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!s} is not supported; use auto, cpu, cuda or cuda:N")
    return dev


def check_device(device: str, where: str = "device") -> None:
    """At startup (config validation, a CLI's arguments): the device can exist on this box — one ConfigError
    naming `where` otherwise, not a failure deep in a job."""
    try:
        resolve_device(device)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The dtype worth autocasting to on `device` ("auto"), or None to stay in fp32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return cuda_autocast_dtype(torch.cuda.get_device_capability(dev))
    if dev.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def compute_dtype(amp: str, device: torch.device | str) -> torch.dtype | None:
    """`amp` ("auto", "off"/"fp32", "bf16", "fp16") on `device` → the autocast dtype (None = fp32)."""
    if amp == "auto":
        return autocast_dtype(device)
    if amp not in _FORCED:
        raise ConfigError(f"amp/precision={amp!r}; use auto, off (= fp32), bf16 or fp16")
    return _FORCED[amp]


def use_channels_last(device: torch.device | str) -> bool:
    """NHWC where it pays: cuDNN, and CPUs whose oneDNN has native bf16 kernels."""
    dev = torch.device(device)
    return dev.type == "cuda" or (dev.type == "cpu" and cpu_has_native_bf16())


@dataclass(frozen=True)
class Runtime:
    """One job's compute decision. `dtype` None = fp32 (autocast off)."""

    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool

    @property
    def dtype_name(self) -> str:
        """"float32" / "bfloat16" / "float16", as metrics.json and timing.json record it."""
        return dtype_name(self.dtype)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """torch.autocast at this dtype (disabled for fp32)."""
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            yield

    def describe(self) -> str:
        return f"{self.device} {self.dtype_name}{' channels_last' if self.channels_last else ''}"


def resolve_runtime(device: str | torch.device = "auto", amp: str = AMP_DEFAULT,
                    channels_last: Any = CHANNELS_LAST_DEFAULT, index: int | None = None) -> Runtime:
    """The Runtime of a job from the config's (or the CLI's) settings and this host."""
    dev = resolve_device(device, index)
    dtype = compute_dtype(amp, dev)
    if channels_last not in CHANNELS_LAST_CHOICES:
        raise ConfigError(f"channels_last={channels_last!r}; use auto, true or false")
    cl = use_channels_last(dev) if channels_last == "auto" else bool(channels_last)
    return Runtime(dev, dtype, cl)


__all__ = ["AMP_DEFAULT", "AMP_CHOICES", "PRECISIONS", "CHANNELS_LAST_DEFAULT", "CHANNELS_LAST_CHOICES",
           "Runtime", "resolve_runtime", "resolve_device", "check_device", "autocast_dtype", "compute_dtype",
           "use_channels_last", "cpu_has_native_bf16"]
