"""The trainer's config contract: required keys, defaults, the checks that reject a malformed config
with one ConfigError, and the small facts (heads, dtype names) the loop and the weights metadata use."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fcnlib.errors import ConfigError
from fcnlib.facts.datasets import MODALITY_CHANNELS as ALL_MODALITY_CHANNELS
from fcnlib.facts.datasets import NET_MODALITIES
from fcnlib.runtime.compute import AMP_CHOICES, AMP_DEFAULT, CHANNELS_LAST_CHOICES, CHANNELS_LAST_DEFAULT
from fcnlib.runtime.precision import dtype_name
from fcnlib.train.finite import check_finite_settings

CHECKPOINT_VERSION = 1
MODALITY_CHANNELS = {m: ALL_MODALITY_CHANNELS[m] for m in NET_MODALITIES}  # the inputs a net may take
_ARCH_KEYS = ("variant", "backbone", "num_classes", "width", "in_channels", "heads")
_REQUIRED = ("experiment", "dataset_json", "train_split", "val_split", "modalities", "arch", "init",
             "recipe", "iterations")
_RECIPE_KEYS = ("batch_size", "lr", "momentum", "weight_decay", "bias_lr_mult", "bias_decay", "loss",
                "optimizer")
_DEFAULTS: dict[str, Any] = {
    "val_max_images": None, "val_every": 0, "log_every": 20, "checkpoint_every": 1000,
    "augment": {"mirror": False, "jitter": 0}, "loss_sampling": 1.0, "class_balance": False, "seed": 0,
    "num_workers": 0, "amp": AMP_DEFAULT, "channels_last": CHANNELS_LAST_DEFAULT, "config_hash": "", "fixed": False,
    "deterministic": False,
}



def check_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Fill optional keys with defaults and reject malformed values with one ConfigError."""
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise ConfigError(f"train config: missing keys {missing}; the workflow resolves them from "
                          f"config/*.yaml (see config/README.md)")
    c = {**_DEFAULTS, **dict(cfg)}
    exp = c["experiment"]
    r = c["recipe"]
    if not isinstance(r, Mapping) or [k for k in _RECIPE_KEYS if k not in r]:
        raise ConfigError(f"train config of {exp}: recipe must have keys {list(_RECIPE_KEYS)}, got {r!r}")

    check_finite_settings({k: c[k] for k in ("recipe", "loss_sampling", "iterations", "seed") if k in c},
                          f"train config of {exp}")  # names the key: a NaN setting would train a net of NaNs
    if r["loss"] not in ("sum", "mean"):
        raise ConfigError(f"train config of {exp}: recipe.loss={r['loss']!r}; use 'sum' or 'mean'")
    if r["optimizer"] not in ("sgd", "adam"):
        raise ConfigError(f"train config of {exp}: recipe.optimizer={r['optimizer']!r}; use 'sgd' or 'adam'")
    if not (isinstance(r["batch_size"], int) and r["batch_size"] >= 1):
        raise ConfigError(f"train config of {exp}: recipe.batch_size={r['batch_size']!r}; use an integer ≥ 1")
    if not (isinstance(r.get("iter_size", 1), int) and r.get("iter_size", 1) >= 1):
        raise ConfigError(f"train config of {exp}: recipe.iter_size={r['iter_size']!r}; use an integer ≥ 1")
    if not (float(r["lr"]) > 0 and math.isfinite(float(r["lr"]))):
        raise ConfigError(f"train config of {exp}: recipe.lr={r['lr']!r}; use a positive number")
    if not (isinstance(c["iterations"], int) and c["iterations"] >= 1):
        raise ConfigError(f"train config of {exp}: iterations={c['iterations']!r}; use an integer ≥ 1")
    if not 0.0 < float(c["loss_sampling"]) <= 1.0:
        raise ConfigError(f"train config of {exp}: loss_sampling={c['loss_sampling']!r}; use 0 < p ≤ 1")
    if c["amp"] not in AMP_CHOICES:
        raise ConfigError(f"train config of {exp}: amp={c['amp']!r}; use one of {', '.join(AMP_CHOICES)}")
    if not isinstance(c["deterministic"], bool):
        raise ConfigError(f"train config of {exp}: deterministic={c['deterministic']!r}; use true or false")
    if c["channels_last"] not in CHANNELS_LAST_CHOICES:
        raise ConfigError(f"train config of {exp}: channels_last={c['channels_last']!r}; use auto/true/false")
    mods = c["modalities"]
    if isinstance(mods, str):
        mods = [mods]
    if not mods or any(m not in MODALITY_CHANNELS for m in mods):
        raise ConfigError(f"train config of {exp}: modalities={mods!r}; use a list of "
                          f"{list(MODALITY_CHANNELS)}")
    c["modalities"] = list(mods)
    init = c["init"]
    if not isinstance(init, Mapping) or init.get("kind") not in ("imagenet", "staged", "late_fusion", "none"):
        raise ConfigError(f"train config of {exp}: init={init!r}; kind must be imagenet, staged, late_fusion "
                          f"or none")
    if init["kind"] == "late_fusion":
        if len(init.get("paths") or []) != 2:
            raise ConfigError(f"train config of {exp}: init.paths must list the two trained nets to fuse")
    elif init["kind"] != "none" and not init.get("path"):
        raise ConfigError(f"train config of {exp}: init.path is missing for init kind {init['kind']!r}")
    for k in ("val_every", "log_every", "checkpoint_every"):
        if not (isinstance(c[k], int) and c[k] >= 0):
            raise ConfigError(f"train config of {exp}: {k}={c[k]!r}; use an integer ≥ 0 (0 = never)")
    return c




def _settings_text(r: Mapping[str, Any], amp_setting: str, amp: torch.dtype | None) -> str:
    """The settings a divergence message quotes (all of them, not only lr)."""
    keys = ("lr", "momentum", "weight_decay", "bias_lr_mult", "score_lr_mult", "loss", "batch_size")
    parts = [f"{k} {r[k]}" for k in keys if k in r]
    return "recipe: " + ", ".join(parts) + f", amp {amp_setting} ({dtype_name(amp)})"


# --------------------------------------------------------------------------------------------------


def _dtype_name(amp: torch.dtype | None) -> str:
    return dtype_name(amp)


def _head_key(h: str, heads: Mapping[str, int]) -> str:
    return next(iter(heads)) if h == "_" else h


def _classes_meta(ds_meta: Mapping[str, Any]) -> Any:
    classes = ds_meta.get("classes") or {}
    if isinstance(classes, dict) and len(classes) == 1:
        return list(next(iter(classes.values())))
    return classes


def _check_heads(c: Mapping[str, Any], arch_meta: Mapping[str, Any], heads: Mapping[str, int],
                 dataset_json: Path) -> None:
    """The net's class counts must be the dataset's (else labels would index past the score layer)."""
    archs = arch_meta["members"] if arch_meta.get("fusion") == "late" else [arch_meta]
    for a in archs:
        if a.get("heads"):
            if dict(a["heads"]) != dict(heads):
                raise ConfigError(f"train config of {c['experiment']}: arch.heads={a['heads']} but "
                                  f"{dataset_json} has heads {dict(heads)}; make them equal")
        elif len(heads) == 1 and int(a.get("num_classes", 21)) != next(iter(heads.values())):
            raise ConfigError(f"train config of {c['experiment']}: arch.num_classes={a.get('num_classes')} "
                              f"but {dataset_json} has {next(iter(heads.values()))} classes; make them equal")
        elif len(heads) > 1:
            raise ConfigError(f"train config of {c['experiment']}: {dataset_json} has heads {dict(heads)}; "
                              f"set arch.heads to them")
