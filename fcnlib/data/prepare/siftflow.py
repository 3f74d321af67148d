"""SIFT Flow (SiftFlowDataset.zip) → data/siftflow/dataset.json with two heads: sem (33) and geo (3).

Raw: Images/spatial_envelope_256x256_static_8outdoorcategories/<id>.jpg, SemanticLabels/…/<id>.mat
('S', 0 = void, 1..33) and GeoLabels/…/<id>.mat ('S', −1 or 0 = void, 1 sky, 2 horizontal, 3 vertical).
Following the authors' SIFT Flow data layer, both are shifted down by one so void → 255 (sem 0..32,
geo 0..2). Splits: trainval (2,486) / test (200) from the FCN lists.

Unannotated images: a few images (highway_bost181, street_urb506 in the real set) have no annotation
(all void). They are converted like any other — their label PNGs are all 255 — so listing them is
harmless: they load, but contribute no pixels to the loss or the metrics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fcnlib.data.dataset import link_or_copy, read_ids, resolve_lists, staged_prepare, write_split_lists
from fcnlib.errors import DataError
from fcnlib.facts.datasets import REGISTRY
from fcnlib.files.io import atomic_write_json, image_size, label_ids, write_label_png
from fcnlib.files.matio import read_mat
from fcnlib.runtime.parallel import map_parallel

PathLike = str | os.PathLike

SUBDIR = "spatial_envelope_256x256_static_8outdoorcategories"


def find_siftflow_root(raw_dir: PathLike) -> Path:
    """The folder holding Images/<SUBDIR> (raw_dir or one level below, e.g. an archive's top folder)."""
    raw = Path(raw_dir)
    cands = [raw, *sorted(p for p in raw.iterdir() if p.is_dir())] if raw.is_dir() else []
    for p in cands:
        if (p / "Images" / SUBDIR).is_dir():
            return p
    raise DataError(f"{raw_dir}: no Images/{SUBDIR} inside; extract SiftFlowDataset.zip there")


def _load_S(path: Path, iid: str, kind: str, lo: int, hi: int) -> np.ndarray:
    """Label ids lo..hi of a SIFT Flow label .mat (key 'S'), checked integral and in range."""
    fix = "re-extract SiftFlowDataset.zip"
    mat = read_mat(path, f"{kind} label of '{iid}'", fix)
    if "S" not in mat:
        raise DataError(f"{path}: not a SIFT Flow label .mat (no key 'S'); {fix}")
    return label_ids(path, mat["S"], lo, hi, f"{kind} label", f"not a SIFT Flow {kind} label — {fix}").astype(np.int32)


def sem_to_train(s: np.ndarray) -> np.ndarray:
    """Semantic 0 (void) .. 33 → 255, 0..32."""
    lab = s - 1
    lab[lab < 0] = 255
    return lab.astype(np.uint8)


def geo_to_train(g: np.ndarray) -> np.ndarray:
    """Geometric −1/0 (void), 1..3 → 255, 0..2 (the authors map −1 to 0 first, then subtract one)."""
    lab = g - 1
    lab[lab < 0] = 255
    return lab.astype(np.uint8)


def _item(args: tuple[str, str, str]) -> str:
    iid, root_s, out_s = args
    root, out = Path(root_s), Path(out_s)
    jpg = root / "Images" / SUBDIR / f"{iid}.jpg"
    w, h = image_size(jpg, f"image of '{iid}'", "re-extract SiftFlowDataset.zip")
    link_or_copy(jpg, out / "rgb" / f"{iid}.jpg")
    for kind, folder, lo, hi, conv, head in (("semantic", "SemanticLabels", 0, 33, sem_to_train, "sem"),
                                             ("geometric", "GeoLabels", -1, 3, geo_to_train, "geo")):
        dst = out / f"labels_{head}" / f"{iid}.png"
        src = root / folder / SUBDIR / f"{iid}.mat"
        s = _load_S(src, iid, kind, lo, hi)
        if s.shape != (h, w):
            raise DataError(f"{src}: label size {s.shape[1]}×{s.shape[0]} differs from image {jpg} {w}×{h}")
        write_label_png(dst, conv(s))
    return iid


def prepare_siftflow(out_dir: PathLike, raw_dir: PathLike, lists_dir: PathLike | None = None,
                     source: str = "real", workers: int | None = None, *,
                     lists: Mapping[str, PathLike] | None = None) -> dict[str, Any]:
    """Convert every image of the zip (listed or not) to rgb/, labels_sem/, labels_geo/; write splits
    trainval/test and dataset.json last. Lists: `lists` {trainval/test: file}, else `lists_dir`/<split>.txt,
    else trainval.txt/test.txt beside the data."""
    with staged_prepare(out_dir, source, "prepare_siftflow") as out:
        root = find_siftflow_root(raw_dir)
        files = resolve_lists("siftflow", lists, lists_dir, root)
        splits = {s: read_ids(f) for s, f in files.items()}
        common = set(splits["trainval"]) & set(splits["test"])
        if common:
            raise DataError(f"{files['test']}: trainval and test share {len(common)} ids (e.g. "
                            f"{sorted(common)[0]}); use the FCN lists (data/sift-flow/*.txt)")
        on_disk = {p.stem for p in (root / "Images" / SUBDIR).glob("*.jpg")}
        missing = sorted((set(splits["trainval"]) | set(splits["test"])) - on_disk)
        if missing:
            raise DataError(f"{root / 'Images' / SUBDIR}/{missing[0]}.jpg: listed image missing ({len(missing)} in "
                            f"all); the lists and SiftFlowDataset.zip do not match")
        ids = sorted(on_disk)
        map_parallel(_item, [(i, str(root), str(out)) for i in ids], workers, desc="siftflow")
        rel = write_split_lists(out, splits)
        labels = {"sem": {"dir": "labels_sem", "ext": ".png"}, "geo": {"dir": "labels_geo", "ext": ".png"}}
        meta = {
            "name": "siftflow", "source": source, "ignore_index": 255,
            **REGISTRY["siftflow"].described(),
            "splits": {s: {"ids": rel[s], "images": {"rgb": {"dir": "rgb", "ext": ".jpg"}}, "labels": labels}
                       for s in rel},
            "sizes": {s: len(v) for s, v in splits.items()},
            "unlisted": sorted(on_disk - set(splits["trainval"]) - set(splits["test"])),
        }
        atomic_write_json(out / "dataset.json", meta)
        print(f"siftflow: trainval {len(splits['trainval'])}, test {len(splits['test'])}, "
              f"{len(meta['unlisted'])} unlisted images converted too")
        return meta
