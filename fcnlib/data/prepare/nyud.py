"""NYUDv2 in the FCN authors' layout (nyud.tar.gz, Gupta crops, 40 classes) → data/nyud/dataset.json.

Raw: nyud/data/images/img_N.png (RGB 425×560), nyud/data/depth/img_N.png (uint16 mm),
optional nyud/data/rawdepth/img_N.png (0 = missing), nyud/segmentation/img_N.mat ('segmentation',
0 = void, 1..40), split lists train.txt / val.txt / test.txt of ids N (381 / 414 / 654; trainval = 795).
Labels are stored as label−1 so void becomes 255, as the authors' NYUD data layer does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fcnlib.data.dataset import link_or_copy, read_ids, resolve_lists, staged_prepare, write_split_lists
from fcnlib.data.hha import CAMERAS
from fcnlib.errors import DataError
from fcnlib.facts.datasets import REGISTRY
from fcnlib.files.io import atomic_write_json, image_size, label_ids, write_label_png
from fcnlib.files.matio import read_mat
from fcnlib.runtime.parallel import map_parallel

PathLike = str | os.PathLike

GUPTA_CROP_WIDTH = 560  # full-resolution width of the Gupta crop; demo images are smaller


def find_nyud_root(raw_dir: PathLike) -> Path:
    """The folder holding data/images and segmentation/ (raw_dir itself or raw_dir/nyud)."""
    raw = Path(raw_dir)
    for p in (raw, raw / "nyud"):
        if (p / "data" / "images").is_dir() and (p / "segmentation").is_dir():
            return p
    raise DataError(f"{raw_dir}: no nyud/data/images + nyud/segmentation inside; extract nyud.tar.gz (FCN "
                    f"layout) there")


def _item(args: tuple[str, str, str, bool]) -> tuple[str, tuple[int, int]]:
    iid, root_s, out_s, has_raw = args

    root, out = Path(root_s), Path(out_s)
    img = root / "data" / "images" / f"img_{iid}.png"
    depth = root / "data" / "depth" / f"img_{iid}.png"
    mat = root / "segmentation" / f"img_{iid}.mat"
    sizes = {}
    for name, p in (("image", img), ("depth", depth)) + ((("rawdepth", root / "data" / "rawdepth" /
                                                           f"img_{iid}.png"),) if has_raw else ()):
        sizes[name] = image_size(p, f"{name} of id {iid}", "re-extract nyud.tar.gz")
    if len(set(sizes.values())) != 1:
        raise DataError(f"{img}: image/depth sizes differ for id {iid} ({sizes}); re-extract nyud.tar.gz")
    link_or_copy(img, out / "rgb" / f"{iid}.png")
    link_or_copy(depth, out / "depth" / f"{iid}.png")
    if has_raw:
        link_or_copy(root / "data" / "rawdepth" / f"img_{iid}.png", out / "rawdepth" / f"{iid}.png")
    dst = out / "labels" / f"{iid}.png"
    m = read_mat(mat, f"label of id {iid}", "re-extract nyud.tar.gz")
    if "segmentation" not in m:
        raise DataError(f"{mat}: not an NYUD label .mat (no key 'segmentation'); re-extract nyud.tar.gz")
    seg = np.asarray(m["segmentation"])
    if seg.ndim != 2 or (seg.shape[1], seg.shape[0]) != sizes["image"]:
        raise DataError(f"{mat}: label shape {seg.shape} does not match image {img} "
                        f"{sizes['image'][0]}×{sizes['image'][1]}; wrong file for this id")
    seg = label_ids(mat, seg, 0, 40, "label", "these are not the 40-class labels of Gupta et al. (0 = void, "
                    "1..40) — re-extract nyud.tar.gz")
    lab = seg.astype(np.int16) - 1  # classes 1..40 → 0..39, void 0 → 255
    lab[lab < 0] = 255
    write_label_png(dst, lab.astype(np.uint8))
    return iid, sizes["image"]


def _camera(width: int) -> dict[str, float]:
    cam = CAMERAS["nyu-color-gupta-crop"]
    if width != GUPTA_CROP_WIDTH:
        cam = cam.scaled(width / GUPTA_CROP_WIDTH)
    return {k: float(v) for k, v in asdict(cam).items()}


def prepare_nyud(out_dir: PathLike, raw_dir: PathLike, lists_dir: PathLike | None = None, source: str = "real",
                 workers: int | None = None, *, lists: Mapping[str, PathLike] | None = None) -> dict[str, Any]:
    """Convert NYUD (FCN layout) to rgb/, depth/, [rawdepth/], labels/ (0..39, 255 void), splits train,
    val, trainval, test, and dataset.json, built whole. hha/ is declared but made later by the HHA rule.
    Split lists: `lists` {train/val/test: file}, else `lists_dir`/<split>.txt, else those in the archive."""
    with staged_prepare(out_dir, source, "prepare_nyud") as out:
        root = find_nyud_root(raw_dir)
        files = resolve_lists("nyud", lists, lists_dir, root)
        splits = {s: read_ids(f) for s, f in files.items()}
        splits = {s: [i[4:] if i.startswith("img_") else i for i in ids] for s, ids in splits.items()}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            common = set(splits[a]) & set(splits[b])
            if common:
                raise DataError(f"{files[a]}: splits {a} and {b} share {len(common)} ids (e.g. {sorted(common)[0]}); "
                                f"use the FCN lists (data/nyud/*.txt)")
        splits["trainval"] = splits["train"] + splits["val"]
        has_raw = (root / "data" / "rawdepth").is_dir()
        ids = sorted(set(splits["trainval"]) | set(splits["test"]))
        results = map_parallel(_item, [(i, str(root), str(out), has_raw) for i in ids], workers, desc="nyud")
        width = results[0][1][0] if results else GUPTA_CROP_WIDTH
        rel = write_split_lists(out, {s: splits[s] for s in ("train", "val", "trainval", "test")})
        images = {"rgb": {"dir": "rgb", "ext": ".png"},
                  "depth": {"dir": "depth", "ext": ".png", "scale_m": 0.001},
                  "hha": {"dir": "hha", "ext": ".png"}}
        if has_raw:
            images["rawdepth"] = {"dir": "rawdepth", "ext": ".png", "scale_m": 0.001}
        meta = {
            "name": "nyud", "source": source, "ignore_index": 255,
            **REGISTRY["nyud"].described(),
            # the HHA rule needs the intrinsics: the Gupta-crop camera scaled to the stored image width
            # (1.0 for the real 560-px crops; the demo renders smaller images with the scaled camera)
            "camera": _camera(width),
            "splits": {s: {"ids": rel[s], "images": images, "labels": {"sem": {"dir": "labels", "ext": ".png"}}}
                       for s in rel},
            "sizes": {s: len(splits[s]) for s in rel},
        }
        atomic_write_json(out / "dataset.json", meta)
        print("nyud: " + ", ".join(f"{s} {len(splits[s])}" for s in rel))
        return meta
