"""The one trainer: every FCN experiment of Tables 1–5 (staged 32s→16s→8s, fixed, at-once, RGBD, HHA,
late fusion, two-headed SIFT Flow) from one resolved config dict.

Entry point: `train(cfg, out_weights, resume_path, log_path, device="auto") -> summary dict`.

Decisions worth knowing (they are what makes results exact and resumable):

* Data order — "random with replacement", as the authors' Caffe data layer: the image indices of
  iteration `it` are drawn from a torch.Generator seeded by (seed, it) alone. The order is therefore a
  pure function of the iteration number, so DataLoader workers prefetching ahead, a crash or a resume
  can never shift it. Augmentation draws (mirror/jitter) are keyed the same way (SegDataset.set_epoch
  is given a number unique to the (iteration, slot) pair).
* Batches > 1 with images of different sizes: `fcnlib.data.collate_pad` pads bottom/right to the
  largest H×W of the batch with 0 input (the mean after preprocessing) and label 255, so padding never
  contributes to the loss (recipe "paper": batch 20).
* Loss: per-pixel softmax cross-entropy, 255 ignored, "sum" (released recipe: unnormalised, batch 1)
  or "mean" over the kept pixels (paper/demo). Two heads (SIFT Flow): the two losses are summed.
  Optional loss sampling (keep each valid pixel with probability p, seeded per (iteration, image
  slot)) and median-frequency class balancing (weights computed once from the train labels).
* One update = ranks × recipe.iter_size × batch_size images (gradient accumulation, data-parallel
  ranks from fcnlib.distributed), equal to one batch of all of them: `_accumulated_step`.
* Device: CUDA when present (bf16 autocast from compute capability 8.0, fp16 with a GradScaler fitted
  to the loss below — fcnlib.precision — and channels_last under "auto"; cudnn.benchmark only when all
  training images share one size; `deterministic: true` for bitwise-repeatable CUDA runs —
  fcnlib.determinism); on CPU "auto" means fp32 (bf16 on native-bf16 CPUs), so a resumed run is bitwise
  identical to a straight one.
* Finite numbers (fcnlib.finite): settings checked at config time; loss and gradients before every
  optimizer step, on the device on CUDA (no per-step host sync; the loss is fetched at the log interval);
  weights before every checkpoint and weights.pt.
* Checkpoints: every `checkpoint_every` iterations and on SIGTERM/SIGINT, everything needed to
  continue exactly (model, optimizer, scaler, iteration, torch/CUDA/numpy/python RNG states, the data
  order state, the log text, training time) goes atomically to `resume_path` — an undeclared path,
  because Snakemake deletes a failed job's declared outputs. On a signal the trainer saves, prints how
  to resume and exits with status 128+signal (143 for SIGTERM), so Snakemake/SLURM mark the job failed
  and a rerun (`snakemake ... --rerun-incomplete`, or a requeue) continues from the checkpoint. A
  checkpoint whose config_hash differs from the config is ignored (training starts afresh). The log
  is rewritten from the checkpoint's copy on resume, so it never holds duplicate lines. The final
  weights are written last (atomically) and the resume file is removed after them.
* Optional keys beyond the paper's recipe (defaults = the paper): recipe.score_lr_mult (lr factor of
  the score layers), recipe.dropout (overrides fc6/fc7 dropout 0.5) — for the tiny random-init demo
  nets only; init kind "none" (random init, tests/ablations); recipe.learn_upsampling (default true:
  the 2× upsamplers learn, as in the CVPR experiments; false: every upscore* frozen at bilinear and
  re-set after staged init, as the authors' released solvers — see freeze_upsampling).
* Threads: the trainer leaves torch's thread count to the caller (workflow `threads:`); on a shared
  CPU, oversubscribed intra-op threads are ~10× slower than one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, WeightsError
from .io import atomic_save_torch, atomic_write_text, read_json

PathLike = str | os.PathLike

IGNORE_INDEX = 255
CHECKPOINT_VERSION = 1
MODALITY_CHANNELS = {"rgb": 3, "hha": 3, "depth": 1}
_ARCH_KEYS = ("variant", "backbone", "num_classes", "width", "in_channels", "heads")
_REQUIRED = ("experiment", "dataset_json", "train_split", "val_split", "modalities", "arch", "init",
             "recipe", "iterations")
_RECIPE_KEYS = ("batch_size", "lr", "momentum", "weight_decay", "bias_lr_mult", "bias_decay", "loss",
                "optimizer")
_DEFAULTS: dict[str, Any] = {
    "val_max_images": None, "val_every": 0, "log_every": 20, "checkpoint_every": 1000,
    "augment": {"mirror": False, "jitter": 0}, "loss_sampling": 1.0, "class_balance": False, "seed": 0,
    "num_workers": 0, "amp": "auto", "channels_last": "auto", "config_hash": "", "fixed": False,
    "deterministic": False,
}

#: Test hook: called as `_iteration_hook(it)` after each completed iteration (None in normal use).
_iteration_hook = None


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------
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
    from .finite import check_finite_settings

    check_finite_settings({k: c[k] for k in ("recipe", "loss_sampling", "iterations", "seed") if k in c},
                          f"train config of {exp}")  # names the key (weight_decay: .nan used to pass)
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
    if c["amp"] not in ("auto", "off", "bf16", "fp16"):
        raise ConfigError(f"train config of {exp}: amp={c['amp']!r}; use auto, off, bf16 or fp16")
    if not isinstance(c["deterministic"], bool):
        raise ConfigError(f"train config of {exp}: deterministic={c['deterministic']!r}; use true or false")
    if c["channels_last"] not in ("auto", True, False):
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


# --------------------------------------------------------------------------------------------------
# determinism helpers
# --------------------------------------------------------------------------------------------------
def _mix(*xs: int) -> int:
    """A well-spread 63-bit seed from a few integers (splitmix64 steps), so (seed, it) pairs never alias."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


def batch_indices(seed: int, it: int, n: int, batch_size: int) -> list[int]:
    """Indices of iteration `it` (1-based): uniform with replacement, a pure function of (seed, it)."""
    g = torch.Generator().manual_seed(_mix(seed, it, 1))
    return torch.randint(n, (batch_size,), generator=g).tolist()


def _rng_state() -> dict[str, Any]:
    """All global RNG states as tensors/plain types, so the checkpoint loads with weights_only=True."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
    }


def _set_rng_state(s: Mapping[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    p = s["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# device
# --------------------------------------------------------------------------------------------------
def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        from .evaluate import resolve_device
    except ImportError:  # evaluate module not there yet: same rule, CUDA if present
        resolve_device = None
    if resolve_device is not None:
        return resolve_device(device)
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for "auto": bf16 on CUDA (fp16 where bf16 is unsupported) and on CPUs with native bf16
    (fcnlib.fast measured emulated bf16 at ~1/10 of fp32 speed, so other CPUs train in fp32)."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    from .fast import autocast_dtype

    return autocast_dtype(device)  # bf16/fp16 on CUDA and on CPUs with native bf16; else fp32


def _setup_backends(c: Mapping[str, Any], dev: torch.device, dataset_json: Path) -> dict[str, Any]:
    """cudnn.benchmark only when every training image has one size (fcnlib.determinism), every switch of
    the `deterministic` setting when it is on. Returns the switches applied."""
    from .determinism import apply_switches, fixed_input_size, resolve_switches

    fixed = False
    if dev.type == "cuda" and not c["deterministic"]:
        from .data import SegDataset

        ds = SegDataset(dataset_json, c["train_split"], c["modalities"])
        fixed = fixed_input_size(ds.image_path(i, m) for i in range(len(ds)) for m in ds.modalities)
    sw = resolve_switches(dev.type, bool(c["deterministic"]), fixed)
    apply_switches(sw)
    return sw


def _make_scaler(c: Mapping[str, Any], amp: torch.dtype | None, dev: torch.device, dataset_json: Path,
                 pre: Mapping[str, Any]) -> Any:
    """fp16's GradScaler, its initial scale fitted to the loss normalisation and batch pixels (precision.py)."""
    from .precision import make_scaler

    if amp != torch.float16:
        return None
    from PIL import Image

    from .data import SegDataset

    ds = SegDataset(dataset_json, c["train_split"], c["modalities"])
    with Image.open(ds.image_path(0)) as im:  # header only: the first image stands for the split's size
        w, h = im.size
    pixels = int(c["recipe"]["batch_size"]) * w * h * float(c["loss_sampling"])
    from .precision import input_range

    rng = max(input_range(p) for p in pre.values()) if pre else 1.0
    return make_scaler(amp, dev, c["recipe"]["loss"], int(pixels), rng)


def _batch_bytes(ds: Any, batch_size: int) -> int:
    """Bytes of one collated batch, from the first image's header (the split's typical size)."""
    from PIL import Image

    from .loader import batch_nbytes

    try:
        with Image.open(ds.image_path(0)) as im:
            w, h = im.size
    except (OSError, IndexError):
        w = h = 500
    return batch_nbytes(batch_size, ds.in_channels, h, w, raw=getattr(ds, "raw", False))


def _settings_text(r: Mapping[str, Any], amp_setting: str, amp: torch.dtype | None) -> str:
    """The settings a divergence message quotes (all of them, not only lr)."""
    from .precision import dtype_name

    keys = ("lr", "momentum", "weight_decay", "bias_lr_mult", "score_lr_mult", "loss", "batch_size")
    parts = [f"{k} {r[k]}" for k in keys if k in r]
    return "recipe: " + ", ".join(parts) + f", amp {amp_setting} ({dtype_name(amp)})"


# --------------------------------------------------------------------------------------------------
# model construction
# --------------------------------------------------------------------------------------------------
def _plain_arch(arch: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """build_fcn kwargs from a config arch; "fcn32s-fixed" becomes fcn32s + fixed=True."""
    a = {k: arch[k] for k in _ARCH_KEYS if k in arch}
    if "variant" not in a:
        raise ConfigError(f"train config: arch {dict(arch)!r} has no 'variant'")
    fixed = a["variant"] == "fcn32s-fixed"
    if fixed:
        a["variant"] = "fcn32s"
    return a, fixed


def _channels(modalities: Sequence[str]) -> int:
    return sum(MODALITY_CHANNELS[m] for m in modalities)


def _rgb_for_dataset(pre: Any, dataset_name: str) -> Any:
    """Caffe-style ImageNet weights on NYUD / SIFT Flow: use the dataset's own mean, as the authors did."""
    from .models.preprocessing import NYUD_RGB_CAFFE, SIFTFLOW_CAFFE

    if pre.channel_order == "BGR" and pre.std is None and pre.scale == 255.0:
        name = dataset_name.lower()
        if name.startswith("nyud"):
            return NYUD_RGB_CAFFE
        if name.startswith("siftflow") or name.startswith("sift"):
            return SIFTFLOW_CAFFE
    return pre


def _preprocessing_from_imagenet(imagenet_pre: Any, modalities: Sequence[str], dataset_name: str) -> dict:
    """Per-modality Preprocessing for a net initialised from ImageNet weights.

    rgb: what the weights carry (dataset mean for Caffe weights on NYUD/SIFT Flow); hha: the HHA preset
    (Caffe weights, 0–255 minus the HHA mean, as the authors) — for torchvision-style weights the same
    mean expressed in their 0–1, std-normalised units, so the first layer sees inputs of the scale it
    was trained on; depth: log-depth minus its mean.
    """
    from .models.preprocessing import DEPTH_LOG, HHA, Preprocessing

    out = {}
    for m in modalities:
        if m == "rgb":
            out[m] = _rgb_for_dataset(imagenet_pre, dataset_name)
        elif m == "hha":
            if imagenet_pre.scale == 1.0 and imagenet_pre.std is not None:
                out[m] = Preprocessing("RGB", 1.0, tuple(v / 255.0 for v in HHA.mean), imagenet_pre.std)
            else:
                out[m] = HHA
        elif m == "depth":
            out[m] = DEPTH_LOG
    return out


def build_model(cfg: Mapping[str, Any], dataset_name: str) -> tuple[nn.Module, dict, dict[str, Any]]:
    """Model + {modality: Preprocessing} + arch meta, initialised as cfg["init"] says."""
    from .models import (
        build_fcn,
        build_late_fusion,
        freeze_except_score,
        init_from_imagenet,
        load_model,
        staged_init,
    )

    arch_cfg = cfg["arch"]
    init = cfg["init"]
    mods = cfg["modalities"]
    fixed = bool(cfg.get("fixed", False))
    if init["kind"] == "late_fusion":
        a_path, b_path = (Path(p) for p in init["paths"])
        net_a, meta_a = load_model(a_path, "cpu")
        net_b, meta_b = load_model(b_path, "cpu")
        mods_a, mods_b = list(meta_a.get("modalities", ["rgb"])), list(meta_b.get("modalities", ["rgb"]))
        if mods_a + mods_b != list(mods):
            raise ConfigError(f"train config of {cfg['experiment']}: modalities {mods} must be those of "
                              f"{a_path} ({mods_a}) followed by those of {b_path} ({mods_b})")
        model = build_late_fusion(net_a, net_b, split=_channels(mods_a))
        pre = {**meta_a["preprocessing"], **meta_b["preprocessing"]}
        arch_meta = {"fusion": "late", "members": [meta_a["arch"], meta_b["arch"]], "weights": [0.5, 0.5]}
    else:
        if arch_cfg.get("fusion") == "late":
            members = arch_cfg.get("members") or []
            if len(members) != 2:
                raise ConfigError(f"train config of {cfg['experiment']}: a late-fusion arch needs two "
                                  f"members")
            (aa, _), (ab, _) = _plain_arch(members[0]), _plain_arch(members[1])
            split = int(aa.get("in_channels", 3))
            model = build_late_fusion(build_fcn(**aa), build_fcn(**ab), split=split)
            arch_meta = {"fusion": "late", "members": [aa, ab], "weights": [0.5, 0.5]}
        else:
            a, fixed_variant = _plain_arch(arch_cfg)
            fixed = fixed or fixed_variant
            if int(a.get("in_channels", 3)) != _channels(mods):
                raise ConfigError(f"train config of {cfg['experiment']}: arch.in_channels="
                                  f"{a.get('in_channels', 3)} but modalities {mods} have {_channels(mods)} "
                                  f"channels")
            model = build_fcn(**a)
            arch_meta = a
        if init["kind"] == "imagenet":
            if arch_meta.get("fusion") == "late":
                raise ConfigError(f"train config of {cfg['experiment']}: late fusion starts from two trained "
                                  f"nets (init kind late_fusion), not from ImageNet")
            # in_channels 4 (RGBD early fusion): init_from_imagenet fills conv1_1's depth filter with the
            # mean of the RGB filters (SPEC §3)
            imagenet_pre = init_from_imagenet(model, Path(init["path"]))
            pre = _preprocessing_from_imagenet(imagenet_pre, mods, dataset_name)
        elif init["kind"] == "staged":
            parent, pmeta = load_model(Path(init["path"]), "cpu")
            staged_init(model, parent)
            pre = dict(pmeta.get("preprocessing") or {})
            if list(pmeta.get("modalities", mods)) != list(mods):
                raise ConfigError(f"train config of {cfg['experiment']}: parent {init['path']} was trained "
                                  f"on {pmeta.get('modalities')} but this stage uses {mods}")
        else:  # "none": random init (tests, ablations); preprocessing from the cfg or plain 0–1 scaling
            from .models.preprocessing import Preprocessing

            pre = dict(init.get("preprocessing") or {})
            for m in mods:
                pre.setdefault(m, Preprocessing("RGB", 1.0, (0.5,) * MODALITY_CHANNELS[m]).to_dict())
    if not cfg["recipe"].get("learn_upsampling", True):
        freeze_upsampling(model)
    if fixed:
        freeze_except_score(model)
    if cfg["recipe"].get("dropout") is not None:
        # demo recipe only: dropout 0.5 on the 256-channel fc6/fc7 of a width-1/16 net drowns the signal
        for mod in model.modules():
            if isinstance(mod, nn.Dropout):
                mod.p = float(cfg["recipe"]["dropout"])
    pre = {m: _as_pre(p) for m, p in pre.items() if m in mods}
    missing = [m for m in mods if m not in pre]
    if missing:
        raise WeightsError(f"{init.get('path') or init.get('paths')}: carries no preprocessing for "
                           f"modalities {missing}; retrain or reconvert that weights file")
    return model, pre, arch_meta


def freeze_upsampling(model: nn.Module) -> list[str]:
    """Released nets (recipe learn_upsampling: false): every interpolation layer (upscore*) is bilinear and
    never learns — lr_mult 0 in the authors' net.py, re-set by surgery.interp in solve.py after the parent's
    weights are copied, so a parent's learned 2× kernels are not carried over. Frozen = requires_grad False
    (left out of the optimizer; fcnlib.models may run such layers as grouped convs). Returns their names."""
    from .models.fcn import bilinear_

    names = []
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if name.rsplit(".", 1)[-1].startswith("upscore") and isinstance(w, torch.Tensor) and w.dim() == 4:
            bilinear_(mod)  # C×C×k×k, channel i from channel i only (as surgery.interp)
            mod.weight.requires_grad_(False)
            names.append(name)
    return names


def _as_pre(p: Any) -> Any:
    from .models.preprocessing import Preprocessing

    return p if isinstance(p, Preprocessing) else Preprocessing.from_dict(p)


# --------------------------------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------------------------------
def segmentation_loss(logits: torch.Tensor, label: torch.Tensor, reduction: str = "sum",
                      weight: torch.Tensor | None = None, keep_prob: float = 1.0,
                      generator: torch.Generator | None = None,
                      ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per-pixel softmax cross-entropy over N×C×H×W logits, `ignore_index` pixels left out.

    reduction "sum" = Caffe's unnormalised SoftmaxWithLoss (released recipe); "mean" = divided by the
    number (weighted: the summed class weights) of kept pixels. keep_prob < 1 keeps each valid pixel
    with that probability (loss sampling, drawn from `generator`).
    """
    per = F.cross_entropy(logits.float(), label, weight=weight, ignore_index=ignore_index, reduction="none")
    keep = label != ignore_index
    if keep_prob < 1.0:
        draw = torch.rand(label.shape, generator=generator, device=label.device)
        keep = keep & (draw < keep_prob)
    total = (per * keep).sum()
    if reduction == "sum":
        return total
    if weight is not None:
        denom = weight[label.clamp(0, weight.numel() - 1)].mul(keep).sum()
    else:
        denom = keep.sum().to(per.dtype)
    return total / denom.clamp_min(1e-12 if weight is not None else 1.0)


def median_frequency_weights(dataset: Any) -> dict[str, torch.Tensor]:
    """Median-frequency class weights per head (Eigen & Fergus): freq_c = pixels of c / pixels of the
    images where c occurs; w_c = median(freq) / freq_c; classes never seen get weight 1."""
    counts = {h: np.zeros(n, np.int64) for h, n in dataset.num_classes.items()}
    present = {h: np.zeros(n, np.int64) for h, n in dataset.num_classes.items()}
    for i in range(len(dataset)):
        for h, lab in dataset.load_labels(i).items():
            n = dataset.num_classes[h]
            valid = lab[lab < n]
            c = np.bincount(valid.ravel(), minlength=n)[:n]
            counts[h] += c
            present[h] += (c > 0) * lab.size
    out = {}
    for h in counts:
        seen = counts[h] > 0
        freq = np.where(seen, counts[h] / np.maximum(present[h], 1), 0.0)
        w = np.ones_like(freq)
        if seen.any():
            w[seen] = np.median(freq[seen]) / freq[seen]
        out[h] = torch.tensor(w, dtype=torch.float32)
    return out


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
class _Keyed(torch.utils.data.Dataset):
    """Wraps a SegDataset so an item is fetched by (iteration, slot, index): augmentation draws are
    keyed by the (iteration, slot) pair, hence identical whichever process or run fetches them."""

    def __init__(self, base: Any, batch_size: int) -> None:
        self.base = base
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        it, slot, idx = key
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(it * self.batch_size + slot)
        return self.base[idx]


class _Batches(torch.utils.data.Sampler):
    """Batch sampler yielding [(it, slot, index), …] for iterations start+1 … end.

    One iteration's global batch = world × iter_size × batch_size images, drawn as ONE batch_indices
    call, so the images of an update do not depend on how they are split: micro-batch m of rank r
    holds the global slots `slots(...)[m]`. This process gets its iter_size micro-batches per iteration.
    """

    def __init__(self, seed: int, start: int, end: int, n: int, batch_size: int, iter_size: int = 1,
                 world: int = 1, rank: int = 0) -> None:
        self.seed, self.start, self.end, self.n, self.bs = seed, start, end, n, batch_size
        self.iter_size, self.world, self.rank = iter_size, world, rank

    @staticmethod
    def slots(batch_size: int, iter_size: int = 1, world: int = 1, rank: int = 0) -> list[list[int]]:
        """Global slot numbers of each micro-batch of `rank`: micro m = slots (m·world + rank)·bs + j."""
        return [[(m * world + rank) * batch_size + j for j in range(batch_size)] for m in range(iter_size)]

    def __len__(self) -> int:
        return max(0, self.end - self.start) * self.iter_size

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        mine = self.slots(self.bs, self.iter_size, self.world, self.rank)
        for it in range(self.start + 1, self.end + 1):
            idx = batch_indices(self.seed, it, self.n, self.bs * self.iter_size * self.world)
            for slots in mine:
                yield [(it, k, idx[k]) for k in slots]


def _sampled_labels(y: Any, keep_prob: float, seed: int, it: int, slots: Sequence[int],
                    dev: torch.device) -> Any:
    """Loss sampling as void labels: each valid pixel of the image in global slot s is kept with
    probability p, from a draw keyed by (seed, it, s, head) — the same pixels whichever micro-batch or
    rank the image lands in (images of one size; padding changes the draw's shape)."""
    if keep_prob >= 1.0:
        return y
    ys = y if isinstance(y, dict) else {"_": y}
    out = {}
    for hi, (h, lab) in enumerate(ys.items()):
        drop = torch.empty(lab.shape, dtype=torch.bool, device=lab.device)
        for j, s in enumerate(slots):
            g = torch.Generator(device=dev).manual_seed(_mix(seed, it, 2, s, hi))
            drop[j] = torch.rand(lab.shape[1:], generator=g, device=dev) >= keep_prob
        out[h] = lab.masked_fill(drop, IGNORE_INDEX)
    return out if isinstance(y, dict) else out["_"]


def _valid_weight(lab: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The 'mean' loss's denominator for one label batch: kept pixels, or their summed class weights
    (as segmentation_loss computes it)."""
    keep = lab != IGNORE_INDEX
    if weight is not None:
        return weight[lab.clamp(0, weight.numel() - 1)].mul(keep).sum()
    return keep.sum().to(torch.float32)


def _accumulated_step(net: nn.Module, guard: Any, scaler: Any, micro: list[tuple[Any, Any]],
                      *, dist: Any, dev: torch.device, amp: torch.dtype | None, cl: bool, reduction: str,
                      weights: Mapping[str, torch.Tensor] | None, keep_prob: float, seed: int, it: int,
                      slots: Sequence[Sequence[int]], where: str, pres: Sequence[Any] | None = None) -> None:
    """One optimizer update over this rank's micro-batches (gradient accumulation, Caffe's iter_size),
    equal to ONE batch of all world × iter_size micro-batches: the 'mean' loss divides every
    micro-batch's summed loss by the valid-pixel count of the whole global batch (counted before any
    backward, all-reduced over ranks), the 'sum' loss adds plain sums; DDP sums gradients over ranks.
    `guard` (fcnlib.finite.StepGuard) checks the global loss and the gradients before the update and keeps
    the loss on the device. `pres`: uint8 batches (fcnlib.loader) are normalised here, on the device."""
    from .loader import labels_to_device, normalize_batch

    ys_all = []
    for (_, y), sl in zip(micro, slots, strict=True):
        y = _sampled_labels(labels_to_device(y, dev), keep_prob, seed, it, sl, dev)
        ys_all.append(y if isinstance(y, dict) else {"_": y})
    denom: dict[str, torch.Tensor] = {}
    if reduction == "mean":
        for h in ys_all[0]:
            w = None if weights is None else weights[h]
            d = sum(_valid_weight(ys[h], w) for ys in ys_all)
            d = dist.all_reduce(d.reshape(1)).reshape(())
            denom[h] = d.clamp_min(1e-12 if w is not None else 1.0)
    guard.opt.zero_grad(set_to_none=True)
    total = torch.zeros((), device=dev)
    for m, ((x, _), ys) in enumerate(zip(micro, ys_all, strict=True)):
        x = x.to(dev, non_blocking=True)
        if pres is not None:
            x = normalize_batch(x, pres)  # uint8 → float32 on the device, bitwise the CPU result
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        last = m == len(micro) - 1
        sync = contextlib.nullcontext() if last or not dist.active else net.no_sync()
        with sync:
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                out = net(x)
            outs = out if isinstance(out, dict) else {"_": out}
            if set(outs) != set(ys):
                raise ConfigError(f"{where}: label heads {sorted(ys)} do not match the net's "
                                  f"outputs {sorted(outs)}; set arch.heads to the dataset's heads")
            terms = []
            for h in outs:
                t = segmentation_loss(outs[h], ys[h], "sum", None if weights is None else weights[h])
                terms.append(t / denom[h] if reduction == "mean" else t)
            loss = sum(terms)
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
        total = total + loss.detach()
    guard.step(dist.all_reduce(total.reshape(1)).reshape(()), it)  # finite loss and gradients, then the update


def _rank_rng(ck: Mapping[str, Any], dist: Any) -> Mapping[str, Any]:
    """This rank's RNG state from a checkpoint (rank 0's for a checkpoint of another world size)."""
    per = ck.get("rng_ranks")
    if dist.active and per and len(per) == dist.world:
        return per[dist.rank]
    return ck["rng"]


def _worker_init(_: int) -> None:
    # The main process owns preemption handling; workers must not die first on SLURM's SIGTERM/SIGINT.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
def _primary_head(heads: Mapping[str, int]) -> str:
    return "sem" if "sem" in heads else next(iter(heads))


@torch.no_grad()
def validate(model: nn.Module, dataset: Any, device: torch.device, amp: torch.dtype | None = None,
             channels_last: bool = False, stop: Any = None) -> dict[str, float] | None:
    """The four metrics on `dataset` (one image at a time, whole images) for the primary head, plus
    `<head>_pixel_acc` for other heads. Returns None if `stop` was raised mid-way (preemption)."""
    from .metrics import ConfusionMatrix

    heads = dataset.num_classes
    cms = {h: ConfusionMatrix(n) for h, n in heads.items()}
    was_training = model.training
    model.eval()
    try:
        for i in range(len(dataset)):
            if stop is not None and stop.signum:
                return None
            x, y = dataset[i]
            x = x.unsqueeze(0).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                out = model(x)
            outs = out if isinstance(out, dict) else {next(iter(heads)): out}
            ys = y if isinstance(y, dict) else {next(iter(heads)): y}
            for h, cm in cms.items():
                cm.update(ys[h], outs[h][0].argmax(0).cpu())
    finally:
        model.train(was_training)
    p = _primary_head(heads)
    s = cms[p].scores()
    res = {k: float(s[k]) for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")}
    for h, cm in cms.items():
        if h != p:
            res[f"{h}_pixel_acc"] = float(cm.scores()["pixel_acc"])
    return res


# --------------------------------------------------------------------------------------------------
# logging, signals, checkpoints
# --------------------------------------------------------------------------------------------------
class _Log:
    """Append-only JSONL log whose full text is also kept (it goes into each checkpoint)."""

    def __init__(self, path: Path, text: str = "") -> None:
        self.path = path
        atomic_write_text(path, text)  # fresh start: empty; resume: exactly the checkpoint's lines
        self.lines = [text] if text else []
        self.f = open(path, "a")  # noqa: SIM115 - closed in close()

    def write(self, obj: Mapping[str, Any]) -> None:
        line = json.dumps(obj) + "\n"
        self.f.write(line)
        self.f.flush()
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def close(self) -> None:
        self.f.close()


class _Stop:
    """Records SIGTERM/SIGINT; the loop checks it between iterations and checkpoints before exiting."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        self.signum = signum

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class _RankLog(_Log):
    """Ranks other than 0 keep the log text (checkpoints) but write no file."""

    def __init__(self, text: str = "") -> None:  # noqa: D107 - no file on purpose
        self.path = None
        self.lines = [text] if text else []
        self.f = None

    def write(self, obj: Mapping[str, Any]) -> None:
        self.lines.append(json.dumps(obj) + "\n")

    def close(self) -> None:
        pass


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """A resume checkpoint, or None if absent; unreadable ones are reported (and ignored) by the caller."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means "cannot resume from this file"
        print(f"fcn train: {path}: unreadable resume checkpoint ({e.__class__.__name__}: {e}); "
              f"starting from iteration 0", file=sys.stderr)
        return None


def _to_device(y: Any, device: torch.device) -> Any:
    if isinstance(y, dict):
        return {k: v.to(device, non_blocking=True) for k, v in y.items()}
    return y.to(device, non_blocking=True)


def _param_groups(model: nn.Module, r: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Caffe's lr_mult/decay_mult: weights lr/decay as given; biases lr × bias_lr_mult, decay only if
    bias_decay. Frozen parameters (fixed nets, the final bilinear upsampler) are left out.

    Optional recipe key `score_lr_mult` (default 1, i.e. the paper) multiplies the lr of the score
    layers (score_fr, score_pool4, score_pool3): the demo recipe uses it because zero-initialised
    score layers on top of the tiny, weakly activated random-init demo nets otherwise sit for hundreds of
    steps at the class-prior plateau.
    """
    lr, wd = float(r["lr"]), float(r["weight_decay"])
    smult = float(r.get("score_lr_mult", 1.0))
    # optional: the trunk's biases (conv*, fc6, fc7) by their own rule — voc-fcn-alexnet/net.py gives them
    # Caffe's default lr ×1 with decay, and ×2 without decay only to score_fr
    trunk_rule = "trunk_bias_lr_mult" in r or "trunk_bias_decay" in r
    buckets: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        in_head = any(part.startswith(("score", "upscore")) for part in name.split(".")[:-1])
        is_score = any(part.startswith("score") for part in name.split(".")[:-1])
        is_bias = name.endswith("bias")
        key = (is_bias, is_score and smult != 1.0, trunk_rule and is_bias and not in_head)
        buckets.setdefault(key, []).append(p)
    groups = []
    for (is_bias, is_score, trunk_bias), params in sorted(buckets.items()):
        b_mult = float(r.get("trunk_bias_lr_mult", r["bias_lr_mult"]) if trunk_bias else r["bias_lr_mult"])
        b_decay = bool(r.get("trunk_bias_decay", r["bias_decay"]) if trunk_bias else r["bias_decay"])
        g_lr = lr * (b_mult if is_bias else 1.0) * (smult if is_score else 1.0)
        g_wd = (wd if b_decay else 0.0) if is_bias else wd
        groups.append({"params": params, "lr": g_lr, "weight_decay": g_wd})
    return groups


def _make_optimizer(model: nn.Module, r: Mapping[str, Any], **kw: Any) -> torch.optim.Optimizer:
    """SGD/Adam over _param_groups; `kw` (fcnlib.finite.optimizer_kwargs): fused kernels on CUDA."""
    groups = _param_groups(model, r)
    if not any(g["params"] for g in groups):
        raise ConfigError("train config: no trainable parameters (fixed net without score layers?)")
    if r["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=float(r["lr"]), betas=(float(r["momentum"]), 0.999), **kw)
    return torch.optim.SGD(groups, lr=float(r["lr"]), momentum=float(r["momentum"]), **kw)


# --------------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------------
def train(cfg: Mapping[str, Any], out_weights: PathLike, resume_path: PathLike, log_path: PathLike,
          device: str = "auto", *, init: PathLike | Sequence[PathLike] | None = None) -> dict[str, Any]:
    """Train one experiment and write `out_weights` (fcnlib.models.save_model format) last.

    `init` (optional) overrides the weights path(s) of cfg["init"]. Resumes from `resume_path` when it
    holds a checkpoint of the same config_hash; exits with status 128+signal after checkpointing on
    SIGTERM/SIGINT. Returns {"experiment", "iterations", "final_loss", "seconds", "device",
    "resumed_from", "val"}.
    """
    from .data import SegDataset
    from .models import save_model

    c = check_config(cfg)
    if init is not None:
        c["init"] = dict(c["init"])
        if isinstance(init, str | os.PathLike):
            c["init"]["path"] = str(init)
        else:
            c["init"]["paths"] = [str(p) for p in init]
    out_weights, resume_path, log_path = Path(out_weights), Path(resume_path), Path(log_path)
    r = c["recipe"]
    seed = int(c["seed"])
    n_iter = int(c["iterations"])
    from . import distributed

    dist, device = distributed.setup(device)  # world 1 (no launcher env): nothing changes
    dev = _resolve_device(device)
    amp = amp_dtype(c["amp"], dev)
    from .fast import tune_malloc, use_channels_last

    tune_malloc()  # glibc keeps big freed buffers: ~9M page faults per 500×500 step otherwise
    cl = use_channels_last(dev) if c["channels_last"] == "auto" else bool(c["channels_last"])

    dataset_json = Path(c["dataset_json"])
    ds_meta = read_json(dataset_json)
    dataset_name = str(ds_meta.get("name", ""))
    heads = dict(ds_meta.get("heads") or {})

    _setup_backends(c, dev, dataset_json)  # before the model meets the GPU (CUBLAS_WORKSPACE_CONFIG)
    _seed_everything(seed)
    model, pre, arch_meta = build_model(c, dataset_name)
    if dist.active:  # same init everywhere (DDP also broadcasts rank 0's), own dropout draws per rank
        torch.manual_seed(_mix(seed, dist.rank, 3))
    _check_heads(c, arch_meta, heads, dataset_json)
    model.to(dev)
    if cl:
        model.to(memory_format=torch.channels_last)
    model.train()
    from .finite import StepGuard, check_model_finite, optimizer_kwargs, state_nonfinite

    opt = _make_optimizer(model, r, **optimizer_kwargs(dev))
    scaler = _make_scaler(c, amp, dev, dataset_json, pre)

    aug = c["augment"] or {}
    augment = ({"mirror": bool(aug.get("mirror")), "jitter": int(aug.get("jitter") or 0), "seed": seed}
               if (aug.get("mirror") or aug.get("jitter")) else None)
    from .loader import raw_ok

    raw = raw_ok(c["modalities"])  # uint8 across processes, normalised on the device (fcnlib.loader)
    train_ds = SegDataset(dataset_json, c["train_split"], c["modalities"], pre, augment, raw=raw)
    if len(train_ds) == 0:
        raise ConfigError(f"{dataset_json}: split '{c['train_split']}' is empty; check its split list")
    val_ds = (SegDataset(dataset_json, c["val_split"], c["modalities"], pre, None,
                         max_images=c["val_max_images"]) if c["val_split"] else None)
    weights = None
    if c["class_balance"]:
        weights = {h: w.to(dev) for h, w in median_frequency_weights(train_ds).items()}

    # ---- resume ------------------------------------------------------------------------------------
    start, train_time, log_text, pending_val, win = 0, 0.0, "", False, [0.0, 0]
    ck = load_checkpoint(resume_path)
    resumed_from = None
    if ck is not None:
        if ck.get("version") != CHECKPOINT_VERSION or ck.get("config_hash") != c["config_hash"] \
                or ck.get("experiment") != c["experiment"]:
            print(f"fcn train: {resume_path}: checkpoint is for another config (hash "
                  f"{ck.get('config_hash')!r} ≠ {c['config_hash']!r}); starting from iteration 0",
                  file=sys.stderr)
        elif state_nonfinite(ck["model"]) or state_nonfinite(ck["optimizer"]):
            print(f"fcn train: {resume_path}: checkpoint holds non-finite weights or optimizer state; "
                  f"ignoring it and starting from iteration 0", file=sys.stderr)
        elif int(ck["iteration"]) <= n_iter:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            if scaler is not None and ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            _set_rng_state(_rank_rng(ck, dist))
            start = int(ck["iteration"])
            train_time = float(ck["train_time"])
            log_text = str(ck["log_text"])
            pending_val = bool(ck.get("pending_val", False))
            win = list(ck.get("loss_window", [0.0, 0]))
            resumed_from = start
            print(f"fcn train: resuming {c['experiment']} from iteration {start} ({resume_path})",
                  file=sys.stderr)
    log = _Log(log_path, log_text) if dist.is_main else _RankLog(log_text)
    iter_size = int(r.get("iter_size", 1))
    ddp = dist.wrap(model)  # the forward pass goes through DDP; `model` stays the bare net (state dicts)
    guard = StepGuard(opt, scaler, dev, c["experiment"], _settings_text(r, c["amp"], amp), tuple(win))

    from .loader import apply_shm_plan, collate_shared, shm_plan

    pres = [pre[m] for m in c["modalities"]]

    plan = shm_plan(int(c["num_workers"]), _batch_bytes(train_ds, r["batch_size"]))
    apply_shm_plan(plan)  # /dev/shm too small for the batches in flight: says so, and fits them
    workers = int(plan["num_workers"])
    loader = torch.utils.data.DataLoader(
        _Keyed(train_ds, r["batch_size"] * iter_size * dist.world),
        batch_sampler=_Batches(seed, start, n_iter, len(train_ds), r["batch_size"], iter_size, dist.world,
                               dist.rank),
        collate_fn=collate_shared, num_workers=workers, pin_memory=dev.type == "cuda",
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=plan["prefetch_factor"] if workers > 0 else None,
        # own generator: creating the iterator must not consume the global RNG (dropout), or a
        # resumed run would diverge from a straight one
        generator=torch.Generator().manual_seed(seed))

    state: dict[str, Any] = {"it": start, "train_time": train_time, "win": win, "last_loss": math.nan,
                             "val": None}

    def checkpoint(pending: bool = False) -> None:
        state["win"] = list(guard.poll())  # raises for a non-finite step since the last poll
        check_model_finite(model, f"checkpoint {resume_path}", state["it"], c["experiment"])
        rngs = dist.gather_objects(_rng_state())  # every rank's dropout RNG (collective: all ranks call)
        if not dist.is_main:
            return
        atomic_save_torch({
            "version": CHECKPOINT_VERSION, "experiment": c["experiment"], "config_hash": c["config_hash"],
            "iteration": state["it"], "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "rng": rngs[0],
            **({"rng_ranks": rngs} if dist.active else {}),
            "data_order": {"kind": "uniform-with-replacement, keyed by (seed, iteration)", "seed": seed,
                           "next_iteration": state["it"] + 1},
            "log_text": log.text, "log_offset": len(log.text.encode()), "train_time": state["train_time"],
            "loss_window": list(state["win"]), "pending_val": pending}, resume_path)

    def run_val(stop: _Stop) -> bool:
        if val_ds is None or len(val_ds) == 0:
            return True
        res = validate(model, val_ds, dev, amp, cl, stop) if dist.is_main else None
        res = dist.broadcast_object(res)  # rank 0 scores; the others wait for its result
        if res is None:
            return False
        state["val"] = res
        log.write({"iter": state["it"], "time": round(state["train_time"], 3), "val": res})
        return True

    def preempted(stop: _Stop, pending: bool = False) -> SystemExit:
        stop.signum = max(stop.signum, dist.agree_max(stop.signum))
        checkpoint(pending)
        name = signal.Signals(stop.signum).name
        if not dist.is_main:
            return SystemExit(128 + stop.signum)
        print(f"fcn train: {name} at iteration {state['it']} of {c['experiment']}: state saved to "
              f"{resume_path}; rerun the same job (e.g. snakemake --rerun-incomplete, or requeue) to resume "
              f"from there", file=sys.stderr)
        return SystemExit(128 + stop.signum)

    from .progress import progress

    bar = progress(total=n_iter, initial=start, desc=c["experiment"], unit="it") if dist.is_main else None

    reduction = r["loss"]
    keep_prob = float(c["loss_sampling"])
    lr = float(r["lr"])
    with _Stop() as stop:
        try:
            if pending_val:
                if not run_val(stop):
                    raise preempted(stop, pending=True)
                checkpoint()
            batches = iter(loader)
            while state["it"] < n_iter:
                agreed = dist.agree_max(stop.signum)  # every rank stops at the same iteration
                if agreed:  # (a signal landing during the collective waits for the next iteration's)
                    stop.signum = agreed
                    raise preempted(stop)
                t0 = time.perf_counter()
                micro = []
                try:
                    for _ in range(iter_size):
                        micro.append(next(batches))
                except Exception:
                    if stop.signum:  # a worker died of the same signal
                        raise preempted(stop) from None
                    raise
                it = state["it"] + 1
                _accumulated_step(
                    ddp, guard, scaler, micro, dist=dist, dev=dev, amp=amp, cl=cl, reduction=reduction,
                    weights=None if weights is None else {h: weights[_head_key(h, heads)] for h in
                                                          (heads if len(heads) > 1 else ["_"])},
                    keep_prob=keep_prob, seed=seed, it=it,
                    slots=_Batches.slots(r["batch_size"], iter_size, dist.world, dist.rank),
                    where=str(dataset_json), pres=pres if raw else None)
                state["it"] = it
                log_now = bool(c["log_every"] and it % c["log_every"] == 0) or it == n_iter
                if log_now:
                    state["win"] = list(guard.poll())  # the one host sync of a log interval
                state["train_time"] += time.perf_counter() - t0
                if bar is not None:
                    bar.update(1)
                if log_now:
                    mean_loss = state["win"][0] / max(state["win"][1], 1)
                    log.write({"iter": it, "loss": mean_loss, "time": round(state["train_time"], 3),
                               "lr": lr})
                    state["win"] = [0.0, 0]
                    guard.reset_window()
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4g}", refresh=False)  # shown with the next line
                if (c["val_every"] and it % c["val_every"] == 0) or it == n_iter:
                    if not run_val(stop):
                        raise preempted(stop, pending=True)
                if c["checkpoint_every"] and it % c["checkpoint_every"] == 0 and it < n_iter:
                    checkpoint()
                if _iteration_hook is not None:
                    _iteration_hook(it)
        finally:
            if bar is not None:
                bar.close()
            log.close()

    meta = {
        "arch": arch_meta, "modalities": list(c["modalities"]),
        "preprocessing": {m: p.to_dict() for m, p in pre.items()},
        "classes": _classes_meta(ds_meta), "experiment": c["experiment"], "iterations": n_iter,
        "config_hash": c["config_hash"], "dataset": dataset_name, "recipe": r.get("name"),
        "init": {k: v for k, v in c["init"].items()}, "fixed": bool(c["fixed"]), "seed": seed,
        "val": state["val"],
    }
    guard.poll()
    state["last_loss"] = guard.last_loss()
    check_model_finite(model, str(out_weights), n_iter, c["experiment"])
    model.to("cpu")
    model.to(memory_format=torch.contiguous_format)
    if dist.is_main:
        save_model(model, meta, out_weights)
        resume_path.unlink(missing_ok=True)
    dist.barrier()  # no rank exits (and no launcher reports success) before the weights are written
    dist.close()
    return {"experiment": c["experiment"], "iterations": n_iter, "final_loss": state["last_loss"],
            "seconds": state["train_time"], "device": str(dev), "resumed_from": resumed_from,
            "val": state["val"], "dtype": _dtype_name(amp),
            "grad_scale": None if scaler is None else float(scaler.get_scale())}


def _dtype_name(amp: torch.dtype | None) -> str:
    from .precision import dtype_name

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


__all__ = ["train", "check_config", "freeze_upsampling", "segmentation_loss", "median_frequency_weights", "validate",
           "batch_indices", "build_model", "amp_dtype", "load_checkpoint"]
