"""Everything built before the first step (device and dtype: the Runtime, fcnlib.runtime.compute): backend
switches, fp16 scaler, the model with its preprocessing (initialised as the config says) and the
optimizer's Caffe-style param groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcnlib.data import SegDataset
from fcnlib.errors import ConfigError, DataError, WeightsError
from fcnlib.files.io import image_size
from fcnlib.models import build_fcn, build_late_fusion, freeze_except_score, init_from_imagenet, load_model, staged_init
from fcnlib.models.fcn import bilinear_
from fcnlib.models.preprocessing import DEPTH_LOG, HHA, NYUD_RGB_CAFFE, SIFTFLOW_CAFFE, Preprocessing
from fcnlib.runtime.determinism import apply_switches, fixed_input_size, resolve_switches
from fcnlib.runtime.precision import input_range, make_scaler
from fcnlib.train.loader import batch_nbytes
from fcnlib.train.settings import _ARCH_KEYS, MODALITY_CHANNELS


def _setup_backends(c: Mapping[str, Any], dev: torch.device, dataset_json: Path) -> dict[str, Any]:
    """cudnn.benchmark only when every training image has one size (fcnlib.runtime.determinism), every switch of
    the `deterministic` setting when it is on. Returns the switches applied."""
    fixed = False
    if dev.type == "cuda" and not c["deterministic"]:
        ds = SegDataset(dataset_json, c["train_split"], c["modalities"])
        fixed = fixed_input_size(ds.image_path(i, m) for i in range(len(ds)) for m in ds.modalities)
    sw = resolve_switches(dev.type, bool(c["deterministic"]), fixed)
    apply_switches(sw)
    return sw


def _make_scaler(c: Mapping[str, Any], amp: torch.dtype | None, dev: torch.device, dataset_json: Path,
                 pre: Mapping[str, Any]) -> Any:
    """fp16's GradScaler, its initial scale fitted to the loss normalisation and batch pixels (precision.py)."""
    if amp != torch.float16:
        return None

    ds = SegDataset(dataset_json, c["train_split"], c["modalities"])
    w, h = image_size(ds.image_path(0), fix="check the prepared dataset")  # the first stands for the split
    pixels = int(c["recipe"]["batch_size"]) * w * h * float(c["loss_sampling"])

    rng = max(input_range(p) for p in pre.values()) if pre else 1.0
    return make_scaler(amp, dev, c["recipe"]["loss"], int(pixels), rng)


def _batch_bytes(ds: Any, batch_size: int) -> int:
    """Bytes of one collated batch, from the first image's header (the split's typical size)."""
    try:
        w, h = image_size(ds.image_path(0))
    except (DataError, IndexError):
        w = h = 500
    return batch_nbytes(batch_size, ds.in_channels, h, w, raw=getattr(ds, "raw", False))


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


def _fuse_trained(cfg: Mapping[str, Any]) -> tuple[nn.Module, dict, dict[str, Any]]:
    """Init kind late_fusion: the two trained nets of init.paths, summed (modalities = theirs, in order)."""
    mods = cfg["modalities"]
    a_path, b_path = (Path(p) for p in cfg["init"]["paths"])
    net_a, meta_a = load_model(a_path, "cpu")
    net_b, meta_b = load_model(b_path, "cpu")
    mods_a, mods_b = meta_a.modalities, meta_b.modalities
    if mods_a + mods_b != list(mods):
        raise ConfigError(f"train config of {cfg['experiment']}: modalities {mods} must be those of "
                          f"{a_path} ({mods_a}) followed by those of {b_path} ({mods_b})")
    model = build_late_fusion(net_a, net_b, split=_channels(mods_a))
    pre = {**meta_a.preprocessing_dicts(), **meta_b.preprocessing_dicts()}
    arch_meta = {"fusion": "late", "members": [meta_a.arch, meta_b.arch], "weights": [0.5, 0.5]}
    return model, pre, arch_meta


def build_model(cfg: Mapping[str, Any], dataset_name: str) -> tuple[nn.Module, dict, dict[str, Any]]:
    """Model + {modality: Preprocessing} + arch meta, initialised as cfg["init"] says."""
    arch_cfg = cfg["arch"]
    init = cfg["init"]
    mods = cfg["modalities"]
    fixed = bool(cfg.get("fixed", False))
    if init["kind"] == "late_fusion":
        model, pre, arch_meta = _fuse_trained(cfg)
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
            pre = pmeta.preprocessing_dicts()
            if pmeta.modalities != list(mods):
                raise ConfigError(f"train config of {cfg['experiment']}: parent {init['path']} was trained "
                                  f"on {pmeta.modalities} but this stage uses {mods}")
        else:  # "none": random init (tests, ablations); preprocessing from the cfg or plain 0–1 scaling

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
    names = []
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if name.rsplit(".", 1)[-1].startswith("upscore") and isinstance(w, torch.Tensor) and w.dim() == 4:
            bilinear_(mod)  # C×C×k×k, channel i from channel i only (as surgery.interp)
            mod.weight.requires_grad_(False)
            names.append(name)
    return names


def _as_pre(p: Any) -> Any:
    return p if isinstance(p, Preprocessing) else Preprocessing.from_dict(p)



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
    """SGD/Adam over _param_groups; `kw` (fcnlib.train.finite.optimizer_kwargs): fused kernels on CUDA."""
    groups = _param_groups(model, r)
    if not any(g["params"] for g in groups):
        raise ConfigError("train config: no trainable parameters (fixed net without score layers?)")
    if r["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=float(r["lr"]), betas=(float(r["momentum"]), 0.999), **kw)
    return torch.optim.SGD(groups, lr=float(r["lr"]), momentum=float(r["momentum"]), **kw)


# --------------------------------------------------------------------------------------------------
