"""Deterministic offline demo data in the REAL raw on-disk formats (`fcn demo-data -o DIR`).

A package, one module per dataset writer (pascal, nyud, siftflow, context), the ImageNet stand-ins
(imagenet), the released-model stand-ins (released), and what they share: encode (bytes, archives) and
paint (toy scenes). `make_demo` (here) runs the writers and writes the manifest.

The demo files go through exactly the extract/prepare code the real downloads go through (same tar/zip
layouts, JPEG/PNG/MAT encodings, split-list relationships), only small: ~64–96 px images, a few dozen
to a few hundred per split, ImageNet "weights" at a reduced width. The same seed gives the same bytes on every run
(fixed archive mtimes/owners, sorted members, fixed encoder settings, MAT headers without dates).

Images are built to make the paper's effects visible at toy scale: every class has its own colour (a
farthest-point palette) and texture, objects are mostly whole blobs and boxes as in VOC, and some are
3–6 px bars or small discs that FCN-8s's skip fusion resolves and FCN-32s's coarse output loses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fcnlib.demo.context import write_context
from fcnlib.demo.encode import TAR_MTIME, ZIP_DATE
from fcnlib.demo.imagenet import (
    PRETRAIN_CLASSES,
    PRETRAIN_PATCH,
    alexnet_caffe_blobs,
    googlenet_state_dict,
    pretrain_patches,
    pretrain_vgg16,
    vgg16_net,
    vgg16_state_dict,
    vgg16_torchvision,
    write_weights,
)
from fcnlib.demo.nyud import write_nyud
from fcnlib.demo.paint import BACKGROUND_RGB, class_appearance, paint
from fcnlib.demo.pascal import write_pascal
from fcnlib.demo.released import released_caffe_blobs, write_released
from fcnlib.demo.siftflow import SIFTFLOW_GROUND, SIFTFLOW_SKY, siftflow_geo, write_siftflow
from fcnlib.errors import ConfigError
from fcnlib.files.io import atomic_write_json, sha256_file, staged_dir

PathLike = str | os.PathLike
ALL_PARTS = ("pascal", "nyud", "siftflow", "context", "weights", "released")

# -- entry points ----------------------------------------------------------------------------------------


def make_demo(out_dir: PathLike, *, seed: int = 0, width: float = 0.0625, n_train: int = 48, n_val: int = 16,
              image_size: int | tuple[int, int] = (64, 96), siftflow_size: int | None = None,
              parts: Sequence[str] = ALL_PARTS, pretrain_steps: int = 1200,
              released: Sequence[str] = (), log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build `out_dir` whole with the demo raw files (what it held is replaced); returns the manifest
    {relative path: {"sha256", "size"}}.

    Files: VOCtrainval_25-May-2011.tar, VOCtrainval_11-May-2012.tar, benchmark.tgz, seg11valid.txt,
    train_noval.txt (pascal); nyud.tar.gz (nyud); SiftFlowDataset.zip, siftflow-trainval.txt,
    siftflow-test.txt (siftflow); VOCtrainval_03-May-2010.tar, trainval.tar.gz, classes-59.txt (context); vgg16.pth,
    bvlc_alexnet.caffemodel, googlenet.pth (weights); stand-ins of the authors' released FCN caffemodels
    named in `released` (e.g. fcn8s-heavy-pascal.caffemodel; 32s ones are large: C×C×64×64 upsamplers);
    manifest.json (last). `n_train`/`n_val` are per-dataset
    train/val image counts (test sets get n_val), `image_size` the (min, max) side in px (or the max
    side alone), `siftflow_size` the side of the square SIFT Flow images (default: the mean of those),
    `width` the backbone channel factor.
    """
    out = Path(out_dir)
    if n_train < 2 or n_val < 1:
        raise ConfigError(f"demo: n_train must be >= 2 and n_val >= 1 (got {n_train}, {n_val})")
    if isinstance(image_size, int):  # one number = the largest side; sizes then vary over its top quarter
        image_size = (max(16, round(0.75 * image_size)), image_size)
    lo, hi = int(image_size[0]), int(image_size[1])
    siftflow_size = (lo + hi) // 2 if siftflow_size is None else int(siftflow_size)
    if lo < 16 or hi < lo:
        raise ConfigError(f"demo: image_size must be (min, max) with 16 <= min <= max, got {image_size}")
    if not 0 < width <= 1:
        raise ConfigError(f"demo: width must be in (0, 1], got {width}")
    unknown = set(parts) - set(ALL_PARTS)
    if unknown:
        raise ConfigError(f"demo: unknown parts {sorted(unknown)}; choose from {list(ALL_PARTS)}")
    log = log or (lambda s: None)
    with staged_dir(out) as stage:  # built whole, then swapped in: no file of an earlier call stays
        steps = {
            "pascal": lambda: write_pascal(stage, seed, n_train, n_val, (lo, hi)),
            "nyud": lambda: write_nyud(stage, seed, n_train, n_val, (lo, hi)),
            "siftflow": lambda: write_siftflow(stage, seed, n_train, n_val, int(siftflow_size)),
            "context": lambda: write_context(stage, seed, n_train, n_val, (lo, hi)),
            "weights": lambda: write_weights(stage, seed, float(width), int(pretrain_steps), log),
            "released": lambda: write_released(stage, seed, float(width), released),
        }
        for part in ALL_PARTS:
            if part in parts:
                t0 = time.perf_counter()
                steps[part]()
                log(f"demo: {part} written in {time.perf_counter() - t0:.1f} s")
        manifest = {}
        for p in sorted(stage.rglob("*")):
            rel = p.relative_to(stage).as_posix()
            if p.is_file() and rel != "manifest.json" and not p.name.startswith("."):
                manifest[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
        atomic_write_json(stage / "manifest.json", manifest)
    return manifest


__all__ = [
    "ALL_PARTS",
    "make_demo",
    "BACKGROUND_RGB",
    "PRETRAIN_CLASSES",
    "PRETRAIN_PATCH",
    "SIFTFLOW_GROUND",
    "SIFTFLOW_SKY",
    "TAR_MTIME",
    "ZIP_DATE",
    "alexnet_caffe_blobs",
    "class_appearance",
    "googlenet_state_dict",
    "paint",
    "pretrain_patches",
    "pretrain_vgg16",
    "released_caffe_blobs",
    "siftflow_geo",
    "vgg16_net",
    "vgg16_state_dict",
    "vgg16_torchvision",
]
