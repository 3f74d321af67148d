"""Stand-ins of the authors' released FCN caffemodels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fcnlib.demo.imagenet import conv_layers
from fcnlib.errors import ConfigError
from fcnlib.facts.datasets import REGISTRY
from fcnlib.facts.released import MODELS
from fcnlib.models.caffe import write_caffemodel
from fcnlib.models.fcn import BACKBONES, bilinear_kernel


def _bilinear_blob(c: int, k: int) -> np.ndarray:
    """The authors' frozen interpolation: channel i upsamples channel i with a k×k bilinear kernel."""
    w = np.zeros((c, c, k, k), np.float32)
    w[np.arange(c), np.arange(c)] = bilinear_kernel(k)
    return w


def _fcn_blobs(rng: np.random.Generator, kind: str, variant: str, heads: dict[str, int], width: float,
               suffix: str = "", final_suffix: bool = True) -> dict[str, list[np.ndarray]]:
    """One FCN stream as the authors' net.py names it: trunk (VGG16 conv1_1…fc7 or CaffeNet conv1…fc7),
    score_fr, and per variant upscore2/score_pool4/upscore_pool4/score_pool3 and the final
    upscore/upscore16/upscore8 (suffix `_sem`/`_geo` per SIFT Flow head, `color`/`hha` per NYUD tower)."""
    def conv(cout: int, cin: int, k: int) -> list[np.ndarray]:
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * np.float32((2.0 / (cin * k * k)) ** 0.5)
        return [w, (0.01 * rng.standard_normal(cout)).astype(np.float32)]

    with torch.device("meta"):  # fcnlib's backbone gives the trunk's shapes; building it draws nothing
        bb = BACKBONES[kind](width=width)
    out: dict[str, list[np.ndarray]] = {}
    for name, m in conv_layers(bb):  # conv1_1 … fc7 (CaffeNet: conv1 … fc7), our names = Caffe's
        cout, cin, k, _ = m.weight.shape
        out[name + suffix] = conv(cout, cin, k)
    taps, f = bb.tap_channels, bb.out_channels
    final = {"fcn32s": ("upscore", 63 if kind == "alexnet" else 64), "fcn16s": ("upscore16", 32),
             "fcn8s": ("upscore8", 16), "fcn8s-atonce": ("upscore8", 16)}[variant]
    for h, n in heads.items():
        hs = f"_{h}" if len(heads) > 1 else ""
        out[f"score_fr{hs}{suffix}"] = [0.1 * x for x in conv(n, f, 1)]
        if variant != "fcn32s":
            out[f"upscore2{hs}{suffix}"] = [_bilinear_blob(n, 4)]
            out[f"score_pool4{hs}{suffix}"] = conv(n, taps["pool4"], 1)
        if variant in ("fcn8s", "fcn8s-atonce"):
            out[f"upscore_pool4{hs}{suffix}"] = [_bilinear_blob(n, 4)]
            out[f"score_pool3{hs}{suffix}"] = conv(n, taps["pool3"], 1)
        if final_suffix:
            out[f"{final[0]}{hs}{suffix}"] = [_bilinear_blob(n, final[1])]
    if variant == "fcn8s-atonce":
        out["scale_pool4"] = [np.array([0.01], np.float32)]
        out["scale_pool3"] = [np.array([0.0001], np.float32)]
    return out


def released_caffe_blobs(name: str, width: float, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Layer blobs of a stand-in for one of the authors' released caffemodels (fcnlib.facts.released.MODELS),
    at `width`: random trunk and score layers, bilinear upsamplers, the at-once net's Scale constants."""
    m = MODELS[name]
    rng = np.random.default_rng([seed, 4242, sorted(MODELS).index(name)])
    n = REGISTRY[m.dataset].num_classes
    heads = dict(m.heads) if m.heads else {"score": n}
    if not m.fusion:
        return _fcn_blobs(rng, m.backbone, m.variant, heads, width)
    out = {}
    for sfx in ("color", "hha"):  # two towers, scores summed 0.5/0.5, one shared upscore
        out.update(_fcn_blobs(rng, m.backbone, m.variant, heads, width, suffix=sfx, final_suffix=False))
    out["upscore"] = [_bilinear_blob(n, 64)]
    return out


def write_released(out: Path, seed: int, width: float, names: Sequence[str]) -> None:
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise ConfigError(f"demo: unknown released models {unknown}; choose from {sorted(MODELS)}")
    for name in names:
        m = MODELS[name]
        write_caffemodel(out / m.caffemodel, released_caffe_blobs(name, width, seed), net_name=name)
