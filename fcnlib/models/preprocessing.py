"""How raw pixels become network input — carried by every weights file so nothing else has to guess.

The mix-up the SPEC warns about (Caffe VGG: BGR, 0–255, mean only; torchvision: RGB, 0–1, mean/std) is
settled here once: a weights file says which `Preprocessing` its filters expect.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from fcnlib.errors import ConfigError

# Means typed once (SPEC §3; Caffe means are in BGR order as the authors' data layers use them).
VGG_MEAN_BGR = (104.00699, 116.66877, 122.67892)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
NYUD_MEAN_BGR = (116.190, 97.203, 92.318)
NYUD_HHA_MEAN = (132.431, 94.076, 118.477)
NYUD_LOG_DEPTH_MEAN = 7.844
SIFTFLOW_MEAN_BGR = (114.578, 115.294, 108.353)

_ORDERS = ("RGB", "BGR")
_TRANSFORMS = (None, "log")


@dataclass(frozen=True)
class Preprocessing:
    """channel_order: order the net wants ("RGB" = as stored on disk, "BGR" = flipped);
    scale: 255.0 if the net wants 0–255 input, 1.0 for 0–1; mean/std in the net's order and scaled units;
    transform: None, or "log" for a 1-channel depth map in millimetres (log(depth) − mean)."""

    channel_order: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...] | None = None
    transform: str | None = None

    def __post_init__(self) -> None:
        if self.channel_order not in _ORDERS:
            raise ConfigError(f"preprocessing.channel_order={self.channel_order!r}; use one of {_ORDERS}")
        if self.transform not in _TRANSFORMS:
            raise ConfigError(f"preprocessing.transform={self.transform!r}; use None or 'log'")
        if not (_is_number(self.scale) and math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"preprocessing.scale={self.scale!r}; use 255.0 (0–255 input) or 1.0 (0–1)")
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "mean", _numbers("mean", self.mean))
        if not self.mean:
            raise ConfigError("preprocessing.mean is empty; give one finite number per input channel")
        if self.std is not None:
            object.__setattr__(self, "std", _numbers("std", self.std))
            if len(self.std) != len(self.mean) or any(s <= 0 for s in self.std):
                raise ConfigError(f"preprocessing.std={list(self.std)}: need {len(self.mean)} finite values > 0 "
                                  f"(one per channel of the mean)")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def apply(self, img: np.ndarray) -> torch.Tensor:
        """H×W×C uint8 (RGB as PIL reads it) or H×W depth (mm, transform="log") → float32 C×H×W tensor.

        Computed as the authors' Caffe data layers compute it: their mean is a float64 array subtracted
        in place from float32 pixels, so numpy subtracts in float64 and rounds once to float32. Rounding
        the mean to float32 first would move about half the values by one ulp."""
        a = np.asarray(img)
        if self.transform == "log":
            if a.ndim == 3 and a.shape[2] == 1:
                a = a[..., 0]
            if a.ndim != 2:
                raise ConfigError(f"log-depth preprocessing needs an H×W depth map, got shape {a.shape}")
            # Missing depth (0) would give −inf; clamp to 1 mm so it maps to a finite, far-from-mean value.
            # The log is float32 as in the authors' layer (np.log of a float32 array).
            x = np.log(np.maximum(a.astype(np.float32), 1.0))[None].astype(np.float64)
        else:
            if a.ndim == 2:
                a = a[..., None]
            if a.ndim != 3 or a.shape[2] != self.channels:
                raise ConfigError(f"preprocessing expects H×W×{self.channels} images, got shape {a.shape}")
            x = a.astype(np.float64).transpose(2, 0, 1)
            if self.channel_order == "BGR":
                x = x[::-1]
            if self.scale != 255.0:
                x = x * (self.scale / 255.0)
        x = x - np.asarray(self.mean, np.float64)[:, None, None]
        if self.std is not None:
            x = x / np.asarray(self.std, np.float64)[:, None, None]
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def apply_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """The same as `apply`, on a uint8 (N×)C×H×W tensor already in RGB-as-stored channel order and on
        any device (the trainer normalises on the GPU): the same float64 operations in the same order and
        one rounding to float32, so the result is bitwise that of `apply`. Not for transform="log" (depth
        travels as float)."""
        if self.transform is not None:
            raise ConfigError(f"preprocessing transform={self.transform!r} runs on the CPU only (apply)")
        x = t.to(torch.float64)
        if self.channel_order == "BGR":
            x = x.flip(-3)
        f64 = {"dtype": torch.float64, "device": x.device}
        if self.scale != 255.0:
            x = x * (self.scale / 255.0)
        x = x - torch.tensor(self.mean, **f64).view(-1, 1, 1)
        if self.std is not None:
            x = x / torch.tensor(self.std, **f64).view(-1, 1, 1)
        return x.to(torch.float32)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = None if self.std is None else list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        if not isinstance(d, dict) or not {"channel_order", "scale", "mean"} <= set(d):
            raise ConfigError(f"preprocessing {d!r} must be a dict with channel_order, scale, mean "
                              "(see fcnlib.models.preprocessing presets)")
        unknown = set(d) - {"channel_order", "scale", "mean", "std", "transform"}
        if unknown:
            raise ConfigError(f"preprocessing has unknown keys {sorted(unknown)}")
        mean = d["mean"]
        mean = (mean,) if _is_number(mean) else mean
        std = d.get("std")
        return cls(d["channel_order"], d["scale"], mean, None if std is None else std, d.get("transform"))


def _is_number(v: Any) -> bool:
    """A real number as a file may hold it (bool and strings are not: "104" in a meta is a mistake)."""
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _numbers(key: str, values: Any) -> tuple[float, ...]:
    """`values` as a tuple of finite floats, else one ConfigError naming `key` and the bad value."""
    if not isinstance(values, list | tuple):
        raise ConfigError(f"preprocessing.{key}={values!r} must be a list of numbers (one per channel)")
    bad = [v for v in values if not _is_number(v) or not math.isfinite(float(v))]
    if bad:
        raise ConfigError(f"preprocessing.{key}={list(values)!r}: {bad[0]!r} is not a finite number; every "
                          f"value must be a finite number")
    return tuple(float(v) for v in values)


CAFFE_VGG = Preprocessing("BGR", 255.0, VGG_MEAN_BGR)
TORCHVISION = Preprocessing("RGB", 1.0, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)
NYUD_RGB_CAFFE = Preprocessing("BGR", 255.0, NYUD_MEAN_BGR)
HHA = Preprocessing("RGB", 255.0, NYUD_HHA_MEAN)  # HHA PNG channels as stored, no flip
DEPTH_LOG = Preprocessing("RGB", 255.0, (NYUD_LOG_DEPTH_MEAN,), transform="log")
SIFTFLOW_CAFFE = Preprocessing("BGR", 255.0, SIFTFLOW_MEAN_BGR)
# torchvision's GoogLeNet (transform_input=True) expects RGB in [-1, 1].
TORCHVISION_GOOGLENET = Preprocessing("RGB", 1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

PRESETS: dict[str, Preprocessing] = {
    "caffe_vgg": CAFFE_VGG, "torchvision": TORCHVISION, "nyud_rgb_caffe": NYUD_RGB_CAFFE, "hha": HHA,
    "depth_log": DEPTH_LOG, "siftflow_caffe": SIFTFLOW_CAFFE, "torchvision_googlenet": TORCHVISION_GOOGLENET,
}
