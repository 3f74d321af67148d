"""Model files: {"state_dict", "meta"} written atomically, read back with weights_only=True and rebuilt
from meta["arch"] (see ARCHITECTURE.md, "Model files")."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, WeightsError
from ..io import atomic_save_torch
from .fcn import build_fcn, build_late_fusion
from .surgery import _is_weights_dict, safe_torch_load

_ARCH_KEYS = {"variant", "backbone", "num_classes", "width", "in_channels", "heads"}


def build_from_arch(arch: dict[str, Any]) -> nn.Module:
    """Rebuild a model from meta["arch"] (build_fcn kwargs, or a late-fusion description)."""
    if not isinstance(arch, dict):
        raise ConfigError(f"arch must be a dict, got {type(arch).__name__}")
    if arch.get("fusion") == "late":
        members = arch.get("members")
        if not (isinstance(members, list) and len(members) == 2):
            raise ConfigError(f"late-fusion arch needs two members, got {members!r}")
        a, b = (build_from_arch(m) for m in members)
        split = arch.get("split", members[0].get("in_channels", 3))
        return build_late_fusion(a, b, split=split, weights=tuple(arch.get("weights", (0.5, 0.5))))
    unknown = set(arch) - _ARCH_KEYS
    if unknown or "variant" not in arch:
        raise ConfigError(f"arch {arch!r}: needs 'variant' and only keys {sorted(_ARCH_KEYS)}")
    return build_fcn(**arch)


def save_model(model: nn.Module, meta: dict[str, Any], path: str | os.PathLike) -> None:
    """Write {"state_dict", "meta"} atomically; meta["arch"] defaults to the model's own build arguments."""
    meta = dict(meta)
    if "arch" not in meta:
        if not hasattr(model, "arch"):
            raise ConfigError("save_model: meta has no 'arch' and the model was not made by build_fcn")
        meta["arch"] = model.arch
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_save_torch({"state_dict": sd, "meta": meta}, path)


def check_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], where: str) -> None:
    """Raise one WeightsError listing missing / unexpected keys and wrong shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items()
              if k in sd and (not isinstance(sd[k], torch.Tensor) or tuple(sd[k].shape) != tuple(v.shape))]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys {unexpected[:5]}")
        if shapes:
            parts.append(f"wrong shapes {shapes[:4]}")
        raise WeightsError(f"{where}: weights do not fit the architecture ({'; '.join(parts)}); the file was "
                           f"written for another net — retrain or pass the matching weights")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode on `device`, meta). Unsafe pickles and mismatched weights raise WeightsError."""
    obj = safe_torch_load(path)
    if not _is_weights_dict(obj):
        raise WeightsError(f"{path}: not an fcnlib model file (needs 'state_dict' and 'meta'); a converted "
                           f"ImageNet file is used with init_from_imagenet, not load_model")
    meta = obj["meta"]
    if "arch" not in meta:
        raise WeightsError(f"{path}: meta has no 'arch'; the file was not written by save_model")
    try:
        model = build_from_arch(meta["arch"])
    except ConfigError as e:
        raise WeightsError(f"{path}: meta['arch'] is invalid ({e})") from None
    check_state_dict(model, obj["state_dict"], str(path))
    model.load_state_dict(obj["state_dict"])
    model.fcn_source = str(path)  # so later errors about this net (e.g. staged init) can name its file
    return model.to(device).eval(), meta
