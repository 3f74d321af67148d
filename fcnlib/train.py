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
  Optional loss sampling (keep each valid pixel with probability p, seeded per iteration) and
  median-frequency class balancing (weights computed once from the train labels).
* Device: CUDA when present (cudnn.benchmark, bf16 — else fp16 with a GradScaler — autocast and
  channels_last under "auto"); on CPU "auto" means fp32, contiguous, so a resumed run is bitwise
  identical to a straight one.
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
  nets only; init kind "none" (random init, tests/ablations).
* Threads: the trainer leaves torch's thread count to the caller (workflow `threads:`); on a shared
  CPU, oversubscribed intra-op threads are ~10× slower than one.
"""

from __future__ import annotations

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
    if r["loss"] not in ("sum", "mean"):
        raise ConfigError(f"train config of {exp}: recipe.loss={r['loss']!r}; use 'sum' or 'mean'")
    if r["optimizer"] not in ("sgd", "adam"):
        raise ConfigError(f"train config of {exp}: recipe.optimizer={r['optimizer']!r}; use 'sgd' or 'adam'")
    if not (isinstance(r["batch_size"], int) and r["batch_size"] >= 1):
        raise ConfigError(f"train config of {exp}: recipe.batch_size={r['batch_size']!r}; use an integer ≥ 1")
    if not (float(r["lr"]) > 0 and math.isfinite(float(r["lr"]))):
        raise ConfigError(f"train config of {exp}: recipe.lr={r['lr']!r}; use a positive number")
    if not (isinstance(c["iterations"], int) and c["iterations"] >= 1):
        raise ConfigError(f"train config of {exp}: iterations={c['iterations']!r}; use an integer ≥ 1")
    if not 0.0 < float(c["loss_sampling"]) <= 1.0:
        raise ConfigError(f"train config of {exp}: loss_sampling={c['loss_sampling']!r}; use 0 < p ≤ 1")
    if c["amp"] not in ("auto", "off", "bf16", "fp16"):
        raise ConfigError(f"train config of {exp}: amp={c['amp']!r}; use auto, off, bf16 or fp16")
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
    """Batch sampler yielding [(it, slot, index), …] for iterations start+1 … end."""

    def __init__(self, seed: int, start: int, end: int, n: int, batch_size: int) -> None:
        self.seed, self.start, self.end, self.n, self.bs = seed, start, end, n, batch_size

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for it in range(self.start + 1, self.end + 1):
            yield [(it, k, i) for k, i in enumerate(batch_indices(self.seed, it, self.n, self.bs))]


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
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_score = any(part.startswith("score") for part in name.split(".")[:-1])
        buckets.setdefault((name.endswith("bias"), is_score and smult != 1.0), []).append(p)
    groups = []
    for (is_bias, is_score), params in sorted(buckets.items()):
        g_lr = lr * (float(r["bias_lr_mult"]) if is_bias else 1.0) * (smult if is_score else 1.0)
        g_wd = (wd if r["bias_decay"] else 0.0) if is_bias else wd
        groups.append({"params": params, "lr": g_lr, "weight_decay": g_wd})
    return groups


def _make_optimizer(model: nn.Module, r: Mapping[str, Any]) -> torch.optim.Optimizer:
    groups = _param_groups(model, r)
    if not any(g["params"] for g in groups):
        raise ConfigError("train config: no trainable parameters (fixed net without score layers?)")
    if r["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=float(r["lr"]), betas=(float(r["momentum"]), 0.999))
    return torch.optim.SGD(groups, lr=float(r["lr"]), momentum=float(r["momentum"]))


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
    from .data import SegDataset, collate_pad
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
    dev = _resolve_device(device)
    amp = amp_dtype(c["amp"], dev)
    from .fast import tune_malloc, use_channels_last

    tune_malloc()  # glibc keeps big freed buffers: ~9M page faults per 500×500 step otherwise
    cl = use_channels_last(dev) if c["channels_last"] == "auto" else bool(c["channels_last"])
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    dataset_json = Path(c["dataset_json"])
    ds_meta = read_json(dataset_json)
    dataset_name = str(ds_meta.get("name", ""))
    heads = dict(ds_meta.get("heads") or {})

    _seed_everything(seed)
    model, pre, arch_meta = build_model(c, dataset_name)
    _check_heads(c, arch_meta, heads, dataset_json)
    model.to(dev)
    if cl:
        model.to(memory_format=torch.channels_last)
    model.train()
    opt = _make_optimizer(model, r)
    scaler = torch.amp.GradScaler(dev.type) if (amp == torch.float16 and dev.type == "cuda") else None

    aug = c["augment"] or {}
    augment = ({"mirror": bool(aug.get("mirror")), "jitter": int(aug.get("jitter") or 0), "seed": seed}
               if (aug.get("mirror") or aug.get("jitter")) else None)
    train_ds = SegDataset(dataset_json, c["train_split"], c["modalities"], pre, augment)
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
        elif int(ck["iteration"]) <= n_iter:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            if scaler is not None and ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            _set_rng_state(ck["rng"])
            start = int(ck["iteration"])
            train_time = float(ck["train_time"])
            log_text = str(ck["log_text"])
            pending_val = bool(ck.get("pending_val", False))
            win = list(ck.get("loss_window", [0.0, 0]))
            resumed_from = start
            print(f"fcn train: resuming {c['experiment']} from iteration {start} ({resume_path})",
                  file=sys.stderr)
    log = _Log(log_path, log_text)

    loader = torch.utils.data.DataLoader(
        _Keyed(train_ds, r["batch_size"]),
        batch_sampler=_Batches(seed, start, n_iter, len(train_ds), r["batch_size"]),
        collate_fn=collate_pad, num_workers=int(c["num_workers"]), pin_memory=dev.type == "cuda",
        worker_init_fn=_worker_init if int(c["num_workers"]) > 0 else None,
        # own generator: creating the iterator must not consume the global RNG (dropout), or a
        # resumed run would diverge from a straight one
        generator=torch.Generator().manual_seed(seed))

    state: dict[str, Any] = {"it": start, "train_time": train_time, "win": win, "last_loss": math.nan,
                             "val": None}

    def checkpoint(pending: bool = False) -> None:
        atomic_save_torch({
            "version": CHECKPOINT_VERSION, "experiment": c["experiment"], "config_hash": c["config_hash"],
            "iteration": state["it"], "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "rng": _rng_state(),
            "data_order": {"kind": "uniform-with-replacement, keyed by (seed, iteration)", "seed": seed,
                           "next_iteration": state["it"] + 1},
            "log_text": log.text, "log_offset": len(log.text.encode()), "train_time": state["train_time"],
            "loss_window": list(state["win"]), "pending_val": pending}, resume_path)

    def run_val(stop: _Stop) -> bool:
        if val_ds is None or len(val_ds) == 0:
            return True
        res = validate(model, val_ds, dev, amp, cl, stop)
        if res is None:
            return False
        state["val"] = res
        log.write({"iter": state["it"], "time": round(state["train_time"], 3), "val": res})
        return True

    def preempted(stop: _Stop, pending: bool = False) -> SystemExit:
        checkpoint(pending)
        name = signal.Signals(stop.signum).name
        print(f"fcn train: {name} at iteration {state['it']} of {c['experiment']}: state saved to "
              f"{resume_path}; rerun the same job (e.g. snakemake --rerun-incomplete, or requeue) to resume "
              f"from there", file=sys.stderr)
        return SystemExit(128 + stop.signum)

    from .progress import progress

    bar = progress(total=n_iter, initial=start, desc=c["experiment"], unit="it")

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
                if stop.signum:
                    raise preempted(stop)
                t0 = time.perf_counter()
                try:
                    x, y = next(batches)
                except Exception:
                    if stop.signum:  # a worker died of the same signal
                        raise preempted(stop) from None
                    raise
                it = state["it"] + 1
                x = x.to(dev, non_blocking=True)
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = _to_device(y, dev)
                with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                    out = model(x)
                gen = None
                if keep_prob < 1.0:
                    gen = torch.Generator(device=dev).manual_seed(_mix(seed, it, 2))
                outs = out if isinstance(out, dict) else {"_": out}
                ys = y if isinstance(y, dict) else {"_": y}
                if set(outs) != set(ys):
                    raise ConfigError(f"{dataset_json}: label heads {sorted(ys)} do not match the net's "
                                      f"outputs {sorted(outs)}; set arch.heads to the dataset's heads")
                loss = sum(segmentation_loss(outs[h], ys[h], reduction,
                                             None if weights is None else weights[_head_key(h, heads)],
                                             keep_prob, gen) for h in outs)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise ConfigError(
                        f"train config of {c['experiment']}: loss became {lv} at iteration {it} (lr {lr:g}, "
                        f"loss {reduction}); an unnormalised 'sum' loss needs lr ~1e-10 (released recipe), a "
                        f"'mean' loss ~1e-4 (paper) — lower recipe.lr")
                state["it"] = it
                state["train_time"] += time.perf_counter() - t0
                state["last_loss"] = lv
                state["win"][0] += lv
                state["win"][1] += 1
                if bar is not None:
                    bar.update(1)
                if (c["log_every"] and it % c["log_every"] == 0) or it == n_iter:
                    mean_loss = state["win"][0] / max(state["win"][1], 1)
                    log.write({"iter": it, "loss": mean_loss, "time": round(state["train_time"], 3),
                               "lr": lr})
                    state["win"] = [0.0, 0]
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
    model.to("cpu")
    model.to(memory_format=torch.contiguous_format)
    save_model(model, meta, out_weights)
    resume_path.unlink(missing_ok=True)
    return {"experiment": c["experiment"], "iterations": n_iter, "final_loss": state["last_loss"],
            "seconds": state["train_time"], "device": str(dev), "resumed_from": resumed_from,
            "val": state["val"]}


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


__all__ = ["train", "check_config", "segmentation_loss", "median_frequency_weights", "validate",
           "batch_indices", "build_model", "amp_dtype", "load_checkpoint"]
