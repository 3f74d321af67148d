"""Net surgery: ImageNet classifiers → fully convolutional weights, and stage-to-stage initialisation.

fc6/fc7/fc8 become convolutions by reshaping (fc6: 4096×(C·k·k) → 4096×C×k×k with k=7 for VGG16, 6 for
AlexNet — Caffe and torchvision both flatten C×H×W in C order, so a reshape is exact). Converted files keep
fc8 (as a 1×1 conv) so the conversion can be checked against the classifier; FCNs never load it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fcnlib.errors import ConfigError, WeightsError
from fcnlib.files.io import atomic_save_torch
from fcnlib.models.caffe import read_caffemodel, sniff_format
from fcnlib.models.fcn import ATONCE_SCALE, BACKBONES
from fcnlib.models.googlenet import INCEPTION
from fcnlib.models.io import (
    build_from_arch,
    check_finite,
    check_state_dict,
    check_weights_file,
    is_weights_dict,
    safe_torch_load,
)
from fcnlib.models.preprocessing import CAFFE_VGG, TORCHVISION, TORCHVISION_GOOGLENET, Preprocessing

FORMATS = ("torchvision", "caffe")
_VGG_NAMES = [f"conv{b}_{i}" for b, n in enumerate((2, 2, 3, 3, 3), start=1) for i in range(1, n + 1)]
_TV_VGG_CONV_IDX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
# fc layers: name → (kernel size it becomes, channels of the layer below at width 1)
_FC = {"vgg16": {"fc6": 7, "fc7": 1, "fc8": 1}, "alexnet": {"fc6": 6, "fc7": 1, "fc8": 1},
       "googlenet": {"fc8": 1}}
_INC_BRANCH_TV = {"1x1": "branch1", "3x3_reduce": "branch2.0", "3x3": "branch2.1", "5x5_reduce": "branch3.0",
                  "5x5": "branch3.1", "pool_proj": "branch4.1"}


def _googlenet_names() -> list[str]:
    names = ["conv1_7x7_s2", "conv2_3x3_reduce", "conv2_3x3"]
    for blk in INCEPTION:
        names += [f"inception_{blk}.{b}" for b in _INC_BRANCH_TV]
    return names + ["fc8"]


def _layer_names(backbone: str) -> list[str]:
    if backbone == "vgg16":
        return _VGG_NAMES + ["fc6", "fc7", "fc8"]
    if backbone == "alexnet":
        return [f"conv{i}" for i in range(1, 6)] + ["fc6", "fc7", "fc8"]
    return _googlenet_names()


def _caffe_name(ours: str) -> str:
    """Our layer name → the Caffe layer name (GoogLeNet writes '/' where we write '_' or '.')."""
    fixed = {"conv1_7x7_s2": "conv1/7x7_s2", "conv2_3x3_reduce": "conv2/3x3_reduce", "conv2_3x3": "conv2/3x3"}
    if ours in fixed:
        return fixed[ours]
    if ours.startswith("inception_"):
        return ours.replace(".", "/")
    return ours


def _as_conv(name: str, w: torch.Tensor, backbone: str, prev_channels: int | None) -> torch.Tensor:
    """Classifier weight (out × in, or Caffe's 1×1×out×in) → out × C × k × k conv weight."""
    k = _FC.get(backbone, {}).get(name)
    if k is None:
        return w
    if w.dim() == 4 and w.shape[0] == 1 and w.shape[1] == 1:  # Caffe legacy 1×1×out×in blob
        w = w[0, 0]
    w = w.reshape(w.shape[0], -1)
    if prev_channels is None or w.shape[1] != prev_channels * k * k:
        if w.shape[1] % (k * k):
            return w[:, :, None, None]  # cannot be a k×k conv; the shape check names the problem
        prev_channels = w.shape[1] // (k * k)
    return w.reshape(w.shape[0], prev_channels, k, k)


def classifier_layers(backbone: str) -> tuple[str, ...]:
    """Our layers that the ImageNet classifier files hold as fully connected (torchvision Linear, Caffe
    InnerProduct) and the FCN as convolutions; fc8 is the 1000-way classifier no FCN backbone has."""
    return tuple(_FC[backbone])


def torchvision_layers(backbone: str) -> dict[str, str]:
    """Our layer name → torchvision's module prefix in its vgg16 / googlenet state dict, in layer order.
    GoogLeNet's are BasicConv2d (conv + bn, no bias) except fc8 ("fc")."""
    if backbone == "vgg16":
        m = dict(zip(_VGG_NAMES, (f"features.{i}" for i in _TV_VGG_CONV_IDX), strict=True))
        return m | {"fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"}
    if backbone != "googlenet":
        raise ConfigError(f"backbone={backbone!r}: no torchvision layout here; use vgg16 or googlenet")
    m = {"conv1_7x7_s2": "conv1", "conv2_3x3_reduce": "conv2", "conv2_3x3": "conv3"}
    for blk in INCEPTION:
        for b, t in _INC_BRANCH_TV.items():
            m[f"inception_{blk}.{b}"] = f"inception{blk}.{t}"
    return m | {"fc8": "fc"}


def _tv_source(backbone: str, sd: dict[str, torch.Tensor], src: Path) -> dict[str, list[torch.Tensor]]:
    """torchvision state dict → {our layer: [weight, bias]}."""
    if backbone == "vgg16":
        m = torchvision_layers(backbone)
        need = [f"{t}.{p}" for t in m.values() for p in ("weight", "bias")]
        _require(sd, need, src, backbone, "torchvision")
        return {ours: [sd[f"{t}.weight"], sd[f"{t}.bias"]] for ours, t in m.items()}
    if backbone == "alexnet":
        raise WeightsError(f"{src}: torchvision's AlexNet is a different net (64/192/384/256/256 "
                           f"channels, no groups, no LRN) from the authors' Caffe FCN-AlexNet; convert "
                           f"bvlc_reference_caffenet.caffemodel with --format caffe instead")
    # googlenet: fold BatchNorm into the convs; torchvision's "5x5" branch is really 3×3 (a known quirk),
    # zero-padded to 5×5 it is the same function at pad 2.
    tv = torchvision_layers(backbone)
    fc = tv.pop("fc8")
    parts = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
    need = [f"{t}.{p}" for t in tv.values() for p in parts] + [f"{fc}.weight", f"{fc}.bias"]
    _require(sd, need, src, backbone, "torchvision")
    out = {}
    for ours, t in tv.items():
        w = sd[f"{t}.conv.weight"].float()
        g = sd[f"{t}.bn.weight"] / torch.sqrt(sd[f"{t}.bn.running_var"] + 1e-3)  # torchvision eps=0.001
        w = w * g[:, None, None, None]
        b = sd[f"{t}.bn.bias"] - sd[f"{t}.bn.running_mean"] * g
        if ours.endswith(".5x5") and w.shape[-1] == 3:
            w = nn.functional.pad(w, (1, 1, 1, 1))
        out[ours] = [w, b]
    out["fc8"] = [sd[f"{fc}.weight"], sd[f"{fc}.bias"]]
    return out


def _require(sd: dict, need: list[str], src: Path, backbone: str, fmt: str) -> None:
    missing = [k for k in need if k not in sd]
    if missing:
        raise WeightsError(f"{src}: not a {fmt} {backbone} classifier — missing {missing[:6]}"
                           f"{' …' if len(missing) > 6 else ''} ({len(missing)} keys); check --backbone "
                           f"and --format")


def _load_torch_sd(src: Path) -> dict[str, torch.Tensor]:
    check_weights_file(src)  # size and compression caps from the zip directory, before torch allocates
    obj = safe_torch_load(src)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{src}: expected a torchvision state dict (name → tensor); "
                           f"got {type(obj).__name__}")
    return obj


def resolve_format(src: str | os.PathLike, fmt: str | None) -> str:
    """The classifier file's format: `fmt` as given (checked against the file's magic bytes), or sniffed."""
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}; use one of {FORMATS}")
    found = sniff_format(src)
    if fmt is None:
        if found is None and Path(src).is_file():
            raise WeightsError(f"{src}: neither a PyTorch .pth (zip/pickle) nor a caffemodel (protobuf); the "
                               f"download is damaged or another kind of file — download it again")
        return found or "caffe"  # a missing file: the reader names it
    if found is not None and found != fmt:
        what = {"torchvision": "a PyTorch .pth/.pt file", "caffe": "a caffemodel"}[found]
        raise WeightsError(f"{src}: {what}, not {fmt} format; drop --format (detected) or pass --format {found}")
    return fmt


def convert_imagenet(src_path: str | os.PathLike, backbone: str, fmt: str | None = None,
                     width: float | None = None) -> tuple[dict[str, torch.Tensor], Preprocessing]:
    """ImageNet classifier file → (state dict with our backbone keys + fc8 as a 1×1 conv, Preprocessing).

    `fmt` None: detected from the file (resolve_format). `width` (reduced-width stand-ins: demo, tests)
    None: detected from the layers' shapes (detect_width).
    """
    src = Path(src_path)
    if backbone not in BACKBONES:
        raise ConfigError(f"backbone={backbone!r}; use one of {sorted(BACKBONES)}")
    fmt = resolve_format(src, fmt)
    if fmt == "torchvision":
        layers = _tv_source(backbone, _load_torch_sd(src), src)
        prep = TORCHVISION_GOOGLENET if backbone == "googlenet" else TORCHVISION
    else:
        blobs = read_caffemodel(src)
        layers = {}
        missing = []
        for ours in _layer_names(backbone):
            cname = "loss3/classifier" if (backbone == "googlenet" and ours == "fc8") else _caffe_name(ours)
            if cname not in blobs:
                missing.append(cname)
                continue
            bl = blobs[cname]
            if len(bl) != 2:
                raise WeightsError(f"{src}: layer {cname} has {len(bl)} blobs, expected weight and bias")
            layers[ours] = [torch.from_numpy(np.ascontiguousarray(bl[0])),
                            torch.from_numpy(np.ascontiguousarray(bl[1]).reshape(-1))]
        if missing:
            raise WeightsError(f"{src}: not a Caffe {backbone} classifier — missing layers {missing[:6]}"
                               f"{' …' if len(missing) > 6 else ''}; check --backbone")
        prep = CAFFE_VGG  # ILSVRC mean image average, BGR, 0–255 (also what the FCN data layers used)
    if width is None:
        width = detect_width({_caffe_name(o): v for o, v in layers.items()}, backbone, src)
    ref_sd = _meta_state_shapes(backbone, width)  # the shapes without allocating memory
    sd: dict[str, torch.Tensor] = {}
    for ours, (w, b) in layers.items():
        if ours in _FC.get(backbone, {}):
            ref = ref_sd.get(f"{ours}.weight")
            w = _as_conv(ours, w.float(), backbone, None if ref is None else ref[1])
        sd[f"{ours}.weight"] = w.float().contiguous()
        sd[f"{ours}.bias"] = b.float().reshape(-1).contiguous()
    bad = [f"{k} {tuple(sd[k].shape)} (expected {tuple(s)})" for k, s in ref_sd.items()
           if k in sd and tuple(sd[k].shape) != tuple(s)]
    if bad:
        raise WeightsError(f"{src}: shapes do not fit the {backbone} backbone: {bad[:4]}; check --backbone")
    check_finite(src, sd, fix="the download is damaged: delete it and download it again")
    return sd, prep


def _out_channels(ours: str, w: Any, backbone: str) -> int:
    """Output channels of a layer's weight blob (Caffe's legacy fc blobs are 1×1×out×in)."""
    shape = tuple(w.shape)
    legacy_fc = ours in _FC.get(backbone, {}) and len(shape) == 4 and shape[:2] == (1, 1)
    return int(shape[2] if legacy_fc else shape[0])


def detect_width(blobs: dict[str, Any], backbone: str, src: str | os.PathLike, suffix: str = "") -> float:
    """The channel-width multiplier of a `backbone` trunk from its weights' shapes (1.0: the paper's net).

    `blobs`: Caffe layer name (+ `suffix`, e.g. a fusion tower's) → [weight, ...]. The widest trunk layer's
    output channels over the paper net's give the width; every other trunk layer must agree with it."""
    ref = _meta_state_shapes(backbone, 1.0)
    outs = {}
    for ours in _layer_names(backbone):
        bl = blobs.get(_caffe_name(ours) + suffix)
        if f"{ours}.weight" in ref and bl:  # fc8 (the classes) says nothing about the width
            outs[ours] = _out_channels(ours, bl[0], backbone)
    if not outs:
        raise WeightsError(f"{src}: no {backbone} trunk layers found (e.g. {_caffe_name(_layer_names(backbone)[0])}"
                           f"{suffix}); check --backbone, or that this is the right file")
    widest = max(outs, key=lambda n: ref[f"{n}.weight"][0])
    width = outs[widest] / ref[f"{widest}.weight"][0]
    fit = _meta_state_shapes(backbone, width) if 0 < width <= 4 else {}
    bad = [f"{n} {o}" for n, o in outs.items() if f"{n}.weight" not in fit or fit[f"{n}.weight"][0] != o]
    if bad:
        raise WeightsError(f"{src}: output channels {bad[:4]} fit no {backbone} width (the widest layer "
                           f"{widest} gives {width:g}); check --backbone, or pass --width")
    return width


def _meta_state_shapes(backbone: str, width: float = 1.0) -> dict[str, torch.Size]:
    with torch.device("meta"):
        bb = BACKBONES[backbone](width=width)
    return {k: v.shape for k, v in bb.state_dict().items()}


def convert_imagenet_file(src: str | os.PathLike, dst: str | os.PathLike, backbone: str, fmt: str | None = None,
                          width: float | None = None) -> Path:
    """Convert and write {"state_dict", "meta": {backbone, format, preprocessing, source, width}}
    (format and width detected where None)."""
    fmt = resolve_format(src, fmt)
    sd, prep = convert_imagenet(src, backbone, fmt, width)
    if width is None:  # the converted layers' shapes say it (detected the same way inside convert_imagenet)
        width = detect_width({_caffe_name(k[:-len(".weight")]): [v] for k, v in sd.items() if k.endswith(".weight")},
                             backbone, src)
    meta = {"backbone": backbone, "format": fmt, "preprocessing": prep.to_dict(), "source": Path(src).name,
            "width": float(width)}
    atomic_save_torch({"state_dict": sd, "meta": meta}, dst)
    return Path(dst)


def _adapt_conv1(w: torch.Tensor, cin: int) -> torch.Tensor:
    """RGB conv1 filters → `cin` input channels: extra channels (depth) get the mean of the RGB filters."""
    have = w.shape[1]
    if cin == have:
        return w
    mean = w.mean(dim=1, keepdim=True)
    if cin < have:
        return mean.expand(-1, cin, -1, -1).contiguous() if cin == 1 else w[:, :cin].contiguous()
    return torch.cat([w] + [mean] * (cin - have), dim=1)


def init_from_imagenet(model: nn.Module, path: str | os.PathLike) -> Preprocessing:
    """Load a converted ImageNet file into an FCN's trunk; returns the Preprocessing the weights need.

    A 4-channel (RGB-D) or 1-channel conv1 is filled from the RGB filters (depth filter = their mean).
    """
    check_weights_file(path)
    obj = safe_torch_load(path)
    if not is_weights_dict(obj):
        raise WeightsError(f"{path}: not a converted ImageNet weights file (needs state_dict + meta); "
                           f"make it with `fcn convert-weights`")
    meta, src = obj["meta"], obj["state_dict"]
    check_finite(path, src, fix="reconvert it with `fcn convert-weights` from a good download")
    arch = getattr(model, "arch", {})
    if meta.get("backbone") != arch.get("backbone"):
        raise WeightsError(f"{path}: weights are for backbone {meta.get('backbone')!r} but the model is "
                           f"{arch.get('backbone')!r}; convert the matching classifier")
    trunk = set(getattr(model, "trunk_names", []))
    target = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in trunk}
    first = next(iter(target))  # conv1 weight is the first trunk tensor
    missing = [k for k in target if k not in src]
    bad = []
    new = {}
    for k, v in target.items():
        if k not in src:
            continue
        w = src[k]
        if k == first and w.dim() == 4 and v.shape[1] != w.shape[1]:
            w = _adapt_conv1(w, v.shape[1])
        if tuple(w.shape) != tuple(v.shape):
            bad.append(f"{k} {tuple(w.shape)} vs model {tuple(v.shape)}")
        new[k] = w
    if missing or bad:
        raise WeightsError(f"{path}: does not fit the model (width {arch.get('width')}): missing "
                           f"{missing[:5]}, wrong shapes {bad[:4]}; convert/generate weights at the "
                           f"model's width")
    with torch.no_grad():
        sd = model.state_dict()
        for k, w in new.items():
            sd[k].copy_(w.to(sd[k].dtype))
    return Preprocessing.from_dict(meta["preprocessing"])


def staged_init(child: nn.Module, parent: nn.Module | dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor of `parent` whose name and shape exist in `child` (FCN-16s from 32s, 8s from 16s).

    Layers new to the child (score_pool4, score_pool3: zero-initialised, new 2× upsamplers: bilinear) keep
    their init, so the child starts from the parent's coarse prediction. A key present in both with a
    different shape is an error (another number of classes or width). Returns the copied keys.
    """
    psd = parent.state_dict() if isinstance(parent, nn.Module) else parent
    csd = child.state_dict()
    bad = [f"{k} {tuple(psd[k].shape)} vs {tuple(v.shape)}" for k, v in csd.items()
           if k in psd and tuple(psd[k].shape) != tuple(v.shape)]
    copied = [k for k in csd if k in psd and k not in {b.split(" ")[0] for b in bad}]
    if bad or not copied:
        where = getattr(parent, "fcn_source", None) or "staged init"
        raise WeightsError(f"{where}: staged-init parent does not fit the child — wrong shapes {bad[:4]}"
                           f"{'' if copied else ', no common layers'}; the parent must have the same "
                           f"backbone, width and classes — retrain it or point init at the matching net")
    with torch.no_grad():
        for k in copied:
            csd[k].copy_(psd[k])
    return copied


def convert_fcn_caffemodel(src: str | os.PathLike, arch: dict[str, Any],
                           layer_map: Callable[[nn.Module], dict[str, list[str]]] | None = None) -> nn.Module:
    """The authors' released FCN caffemodel (e.g. fcn8s-heavy-pascal) → our FCN built from `arch`.

    Our state-dict keys are the Caffe layer names, so by default this is a name-for-name copy;
    `layer_map(model)` → {caffe layer: [our module prefixes]} renames (the colour-HHA net's per-tower
    suffixes, its one shared upscore filling both towers). The at-once net's fixed Scale layers
    (scale_pool4/3) are constants here: their blobs must hold our constants, then they are dropped.
    Every layer of the model must be filled and every layer of the file used.
    """
    model = build_from_arch(arch)
    names = layer_map(model) if layer_map is not None else None
    sd, unused = {}, []
    for name, blobs in read_caffemodel(src).items():
        if name.startswith("scale_pool"):
            _check_fixed_scale(src, name, blobs, ATONCE_SCALE.get(name[len("scale_"):]))
            continue
        targets = [name] if names is None else names.get(name)
        if not targets:
            unused.append(name)
            continue
        for t in targets:
            sd[f"{t}.weight"] = torch.from_numpy(np.ascontiguousarray(blobs[0]))
            if len(blobs) > 1:
                sd[f"{t}.bias"] = torch.from_numpy(np.ascontiguousarray(blobs[1]).reshape(-1))
    if unused:
        raise WeightsError(f"{src}: layers {unused[:6]} have no place in the {arch.get('variant', 'fusion')} "
                           f"net; the caffemodel is another released model — pick the matching one")
    own = model.state_dict()
    for k, v in sd.items():  # fc6/fc7 of very old files may be stored 2-D; reshape where the count fits
        if k in own and v.shape != own[k].shape and v.numel() == own[k].numel():
            sd[k] = v.reshape(own[k].shape)
    check_state_dict(model, sd, str(src))
    model.load_state_dict(sd)
    return model


def _check_fixed_scale(src: str | os.PathLike, name: str, blobs: list[np.ndarray], want: float | None) -> None:
    """A Scale layer we replace by the constant `want` must hold exactly that: every value of its scale
    blob (one per channel — a file with per-channel scales is not a constant) and a zero bias, if any."""
    scale = np.asarray(blobs[0], np.float64).reshape(-1) if blobs else np.zeros(0)
    off = np.flatnonzero(~np.isclose(scale, want, rtol=1e-6, atol=0.0)) if want is not None else [0]
    if want is None or scale.size == 0 or len(off):
        i = int(off[0]) if len(off) and scale.size else 0
        got = f"{scale[i]!r} at channel {i} ({len(off)} of {scale.size} values differ)" if scale.size else "nothing"
        raise WeightsError(f"{src}: layer {name} scales by {got} but our at-once net uses the constant {want} on "
                           f"every channel; this is not the authors' at-once net — pick the matching caffemodel")
    bias = [np.asarray(b, np.float64).reshape(-1) for b in blobs[1:]]
    if any(b.size and np.any(b != 0) for b in bias):
        raise WeightsError(f"{src}: layer {name} has a non-zero bias; the authors' at-once net scales without "
                           f"one — pick the matching caffemodel")
