"""Model files: {"state_dict", "meta"} written atomically, read back with weights_only=True and rebuilt
from meta["arch"] (see ARCHITECTURE.md, "Model files")."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fcnlib.errors import ConfigError, DataError, WeightsError
from fcnlib.files.envcaps import env_int
from fcnlib.files.io import atomic_save_torch
from fcnlib.files.paths import open_regular
from fcnlib.models.fcn import build_fcn, build_late_fusion
from fcnlib.models.meta import ModelMeta

_ARCH_KEYS = {"variant", "backbone", "num_classes", "width", "in_channels", "heads"}


def safe_torch_load(path: str | os.PathLike, device: str = "cpu") -> Any:
    """torch.load with weights_only=True; every failure becomes one WeightsError naming the file."""
    try:
        with open_regular(path, "weights file") as f:
            return torch.load(f, map_location=device, weights_only=True)
    except DataError as e:
        raise WeightsError(str(e)) from None
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found; run the rule that makes it or fix the "
                           f"path") from None
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        why = lines[0][:160] if lines else "not a plain tensor file"
        raise WeightsError(f"{path}: refused to load — the file holds Python objects that would run code "
                           f"when unpickled ({why}); only plain weight files are accepted: re-create "
                           f"it with fcnlib (save_model / convert-weights)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        why = (str(e).splitlines() or [""])[0][:160]
        raise WeightsError(f"{path}: not a readable torch weights file ({why}); the file is truncated or "
                           f"of another format — delete it and recreate it") from None


def is_weights_dict(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict)
            and isinstance(obj.get("meta"), dict))


def build_from_arch(arch: dict[str, Any]) -> nn.Module:
    """Rebuild a model from meta["arch"] (build_fcn kwargs, or a late-fusion description)."""
    if not isinstance(arch, dict):
        raise ConfigError(f"arch must be a dict, got {type(arch).__name__}")
    if arch.get("fusion") == "late":
        members = arch.get("members")
        if not (isinstance(members, list) and len(members) == 2):
            raise ConfigError(f"late-fusion arch needs two members, got {members!r}")
        if any(not isinstance(m, dict) or "fusion" in m for m in members):
            raise ConfigError("late-fusion members must be single nets (build_fcn arguments), not fusions")
        a, b = (build_from_arch(m) for m in members)
        split = arch.get("split", members[0].get("in_channels", 3))
        return build_late_fusion(a, b, split=split, weights=tuple(arch.get("weights", (0.5, 0.5))))
    unknown = set(arch) - _ARCH_KEYS
    if unknown or "variant" not in arch:
        raise ConfigError(f"arch {arch!r}: needs 'variant' and only keys {sorted(_ARCH_KEYS)}")
    return build_fcn(**arch)


def save_model(model: nn.Module, meta: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write {"state_dict", "meta"} atomically; meta (a ModelMeta, or any mapping) is stored as a plain dict;
    meta["arch"] defaults to the model's own build arguments."""
    meta = dict(meta)
    if "arch" not in meta:
        if not hasattr(model, "arch"):
            raise ConfigError("save_model: meta has no 'arch' and the model was not made by build_fcn")
        meta["arch"] = model.arch
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    check_finite(path, sd, writing=True)
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


DEFAULT_MAX_WEIGHTS_BYTES = 8 << 30  # the largest net of the paper (RGB-HHA fusion, fp32) is ~1.1 GB
_MAX_PACK_RATIO = 20  # torch.save stores tensors uncompressed; a DEFLATE entry expanding more is a bomb


def max_weights_bytes() -> int:
    """Cap on what one weights file may expand to (FCN_MAX_WEIGHTS_BYTES), checked before loading."""
    return env_int("FCN_MAX_WEIGHTS_BYTES", DEFAULT_MAX_WEIGHTS_BYTES, "bytes")


def check_weights_file(path: str | os.PathLike) -> None:
    """Refuse, from the zip directory alone, a .pt that would expand past the cap or holds compressed
    storages (a 2 GB tensor of zeros DEFLATEs to a few MB), before torch allocates anything."""
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a folder, not a weights file; give the weights.pt inside it")
    try:
        with open_regular(path, "weights file") as f:
            if not zipfile.is_zipfile(f):
                return  # legacy (non-zip) format or not a torch file: safe_torch_load reports it
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
    except DataError as e:
        raise WeightsError(str(e)) from None
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # missing or unreadable: safe_torch_load names it
    cap = max_weights_bytes()
    total = sum(i.file_size for i in infos)
    if total > cap:
        raise WeightsError(f"{path}: expands to {total} B, over the limit of {cap} B; if the file is genuine "
                           f"raise FCN_MAX_WEIGHTS_BYTES, else delete it and recreate it")
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED and i.file_size > max(1 << 20, _MAX_PACK_RATIO * i.compress_size):
            raise WeightsError(f"{path}: entry {i.filename!r} is compressed {i.file_size // max(i.compress_size, 1)}×"
                               f" ({i.compress_size} B → {i.file_size} B); torch.save never compresses, so the "
                               f"file was crafted or damaged — delete it and recreate it with fcnlib")


#: Bounds on meta['arch'] before anything is built: the largest real one (a late fusion with heads) has
#: ~30 values; a crafted file can share one sub-dict many times over (pickle memo), so counting walks
#: stop at the budget instead of expanding the graph.
MAX_ARCH_NODES = 256
MAX_ARCH_DEPTH = 4


def check_arch_bounds(path: str | os.PathLike, arch: Any) -> None:
    """Refuse an arch description too large or too deep to be one of ours, in time bounded by the caps
    (not by the size it expands to), before build_from_arch runs."""
    budget = [MAX_ARCH_NODES]

    def walk(node: Any, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_ARCH_DEPTH:
            what = f"more than {MAX_ARCH_NODES} values" if budget[0] < 0 else f"nested over {MAX_ARCH_DEPTH} levels"
            raise WeightsError(f"{path}: meta['arch'] holds {what} (a real one has ~30, two levels for a late "
                               f"fusion); the file is crafted or damaged — delete it and recreate it")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list | tuple) else ()
        for c in children:
            walk(c, depth + 1)

    walk(arch, 0)


def _check_arch_size(path: str | os.PathLike, arch: dict[str, Any], sd: dict) -> nn.Module:
    """Build the net on the meta device (no memory) and check the file's tensors fit it, so an absurd
    meta (num_classes=3,000,000 in a 1 KB file) is refused before gigabytes are allocated."""
    try:
        with torch.device("meta"):
            shell = build_from_arch(arch)
    except (ConfigError, TypeError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: meta['arch'] is invalid ({e}); the file was not written by save_model — "
                           f"delete it and recreate it") from None
    need = sum(t.numel() * t.element_size() for t in shell.state_dict().values())
    cap = max_weights_bytes()
    if need > cap:
        raise WeightsError(f"{path}: meta['arch'] {arch!r} describes a net of {need} B, over the limit of "
                           f"{cap} B; the file is damaged or crafted — delete it and recreate it (if it is "
                           f"genuine, raise FCN_MAX_WEIGHTS_BYTES)")
    check_state_dict(shell, sd, str(path))
    return shell


def check_finite(path: str | os.PathLike, sd: dict[str, torch.Tensor], writing: bool = False,
                 fix: str | None = None) -> None:
    """A weights file with NaN/inf (a diverged or poisoned training) would give all-background maps, so
    none is read, and none is written (`writing`: the file is not created). `fix` replaces the advice for
    files that are not trainings (an ImageNet download)."""
    for k, v in sd.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            n = int((~torch.isfinite(v)).sum())
            if fix is not None:
                raise WeightsError(f"{path}: tensor {k!r} holds {n} non-finite values (NaN/inf); {fix}")
            if writing:
                raise WeightsError(f"{path}: refusing to write weights whose tensor {k!r} holds {n} non-finite "
                                   f"values (NaN/inf: the training diverged); check the training settings "
                                   f"(lr, weight_decay, bias_lr_mult) and rerun")
            raise WeightsError(f"{path}: tensor {k!r} holds {n} non-finite values (NaN/inf; the training "
                               f"diverged or the file is damaged); retrain (delete it and rerun) — check "
                               f"the training settings (lr, weight_decay, bias_lr_mult) first")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelMeta]:
    """(model in eval mode on `device`, meta). Unsafe pickles, oversized files or nets, non-finite and
    mismatched weights raise WeightsError."""
    check_weights_file(path)
    obj = safe_torch_load(path)
    if not is_weights_dict(obj):
        raise WeightsError(f"{path}: not an fcnlib model file (needs 'state_dict' and 'meta'); a converted "
                           f"ImageNet file is used with init_from_imagenet, not load_model")
    meta = obj["meta"]
    if "arch" not in meta:
        raise WeightsError(f"{path}: meta has no 'arch'; the file was not written by save_model")
    if not isinstance(meta["arch"], dict):
        raise WeightsError(f"{path}: meta['arch'] is invalid (not a dict); delete it and recreate it")
    check_arch_bounds(path, meta["arch"])
    meta = ModelMeta(meta)
    meta.check(path)
    _check_arch_size(path, meta["arch"], obj["state_dict"])
    check_finite(path, obj["state_dict"])
    try:
        model = build_from_arch(meta["arch"])
    except ConfigError as e:
        raise WeightsError(f"{path}: meta['arch'] is invalid ({e})") from None
    check_state_dict(model, obj["state_dict"], str(path))
    model.load_state_dict(obj["state_dict"])
    model.fcn_source = str(path)  # so later errors about this net (e.g. staged init) can name its file
    return model.to(device).eval(), meta
