"""PASCAL-Context (59 classes + background) on VOC2010 images → data/context/dataset.json.

Raw: trainval.tar.gz (trainval/<id>.mat with 'LabelMap' = ids of the full label list in labels.txt,
"N: name" per line, 459 entries) and VOC2010 JPEGImages; splits = VOC2010 ImageSets/Main train/val
(4,998 / 5,105). As in the FCN authors' PASCAL-Context data layer, each of the 59 task classes gets
its index in the 59-class list (1..59) and every other pixel — unlisted classes and unlabelled — is
0 = background: 60 outputs, no void.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fcnlib.data.dataset import link_or_copy, read_ids, staged_prepare, write_split_lists
from fcnlib.errors import DataError
from fcnlib.facts.datasets import REGISTRY
from fcnlib.files.io import atomic_write_json, image_size, label_ids, write_label_png
from fcnlib.files.matio import read_mat
from fcnlib.files.paths import open_regular
from fcnlib.runtime.parallel import map_parallel

PathLike = str | os.PathLike

# The 59-class list and the full label list spell three classes differently (task name → raw name).
RAW_SPELLING = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}


def parse_label_list(path: PathLike) -> dict[int, str]:
    """An "N: name" list (labels.txt, classes-59.txt, 59_labels.txt) as {N: name}."""
    out: dict[int, str] = {}
    try:
        with open_regular(path, "label list") as f:
            lines = f.read().decode("utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: label list not found; download/extract it first") from None
    for ln, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, sep, name = line.partition(":")
        if not sep or not key.strip().isdigit():
            raise DataError(f"{path}:{ln}: expected 'N: name', got {line!r}; is this the right file?")
        out[int(key)] = name.strip()
    if not out:
        raise DataError(f"{path}: empty label list; re-download it")
    return out


def read_classes59(path: PathLike) -> list[str]:
    """The 60 output names (background first) from the FCN classes-59.txt or the Context 59_labels.txt."""
    table = parse_label_list(path)
    names = [table[k] for k in sorted(table)]
    if min(table) == 1:  # 59_labels.txt has no background line
        names = ["background", *names]
    if len(names) != 60:
        raise DataError(f"{path}: expected 59 classes (+ background), found {len(names) - 1}; use the "
                        f"59-class list (classes-59.txt)")
    return names


def context_lut(classes60: list[str], labels_txt: PathLike) -> np.ndarray:
    """uint8 lookup raw id → 0..59 (0 for anything not in the 59-class task)."""
    raw = parse_label_list(labels_txt)
    by_name = {n.replace(" ", ""): i for i, n in raw.items()}
    lut = np.zeros(max(raw) + 1, np.uint8)
    for t, name in enumerate(classes60[1:], 1):
        key = RAW_SPELLING.get(name, name).replace(" ", "")
        if key not in by_name:
            raise DataError(f"{labels_txt}: class '{name}' of the 59-class list is not in the full label list; "
                            f"use PASCAL-Context's labels.txt from trainval.tar.gz")
        lut[by_name[key]] = t
    return lut


def _find(root: Path, marker: str, candidates: tuple[str, ...]) -> Path | None:
    for c in candidates:
        p = root / c if c else root
        if (p / marker).exists():
            return p
    return None


def _item(args: tuple[str, str, str, str, Any]) -> str:
    iid, jpg, mat, out_dir, lut = args

    out = Path(out_dir)
    link_or_copy(jpg, out / "rgb" / f"{iid}.jpg")
    dst = out / "labels" / f"{iid}.png"
    m = read_mat(mat, f"PASCAL-Context label of id '{iid}'", "re-extract trainval.tar.gz")
    if "LabelMap" not in m:
        raise DataError(f"{mat}: not a PASCAL-Context label (.mat without 'LabelMap'); re-extract trainval.tar.gz")
    raw = label_ids(mat, m["LabelMap"], 0, len(lut) - 1, "LabelMap",
                    "labels.txt and trainval/ come from different releases, or the file is damaged")
    size = image_size(jpg, f"image of id '{iid}'", "re-extract the VOC2010 archive")
    if (raw.shape[1], raw.shape[0]) != size:
        raise DataError(f"{mat}: label size {raw.shape[1]}×{raw.shape[0]} differs from its image {jpg} "
                        f"{size[0]}×{size[1]}; the VOC2010 and Context archives do not match")
    write_label_png(dst, lut[raw.astype(np.int64)])
    return iid


def prepare_context(out_dir: PathLike, voc2010_dir: PathLike, context_dir: PathLike, classes59_file: PathLike,
                    source: str = "real", workers: int | None = None) -> dict[str, Any]:
    """Convert PASCAL-Context to rgb/<id>.jpg + labels/<id>.png (0..59) + splits + dataset.json, built whole."""
    with staged_prepare(out_dir, source, "prepare_context") as out:
        voc = _find(Path(voc2010_dir), "JPEGImages",
                    ("", "VOC2010", "VOCdevkit/VOC2010", "TrainVal/VOCdevkit/VOC2010"))
        if voc is None:
            raise DataError(f"{voc2010_dir}: no VOC2010 folder with JPEGImages inside; extract "
                            f"VOCtrainval_03-May-2010.tar there")
        ctx = _find(Path(context_dir), "labels.txt", ("", "trainval", "..", "pascal-context"))
        if ctx is None:
            raise DataError(f"{context_dir}: labels.txt not found; extract PASCAL-Context trainval.tar.gz there")
        mats = ctx / "trainval" if (ctx / "trainval").is_dir() else ctx
        classes = read_classes59(classes59_file)
        lut = context_lut(classes, ctx / "labels.txt")
        splits = {s: read_ids(voc / "ImageSets" / "Main" / f"{s}.txt") for s in ("train", "val")}
        overlap = set(splits["train"]) & set(splits["val"])
        if overlap:
            raise DataError(f"{voc}/ImageSets/Main: train and val share {len(overlap)} ids (e.g. "
                            f"{sorted(overlap)[0]}); re-extract VOC2010")
        ids = sorted(set(splits["train"]) | set(splits["val"]))
        jobs = [(i, str(voc / "JPEGImages" / f"{i}.jpg"), str(mats / f"{i}.mat"), str(out), lut) for i in ids]
        for _, jpg, _, _, _ in jobs:
            if not Path(jpg).is_file():
                raise DataError(f"{jpg}: image listed in VOC2010 ImageSets/Main is missing; re-extract the tar")
        map_parallel(_item, jobs, workers, desc="context")
        rel = write_split_lists(out, splits)
        meta = {
            "name": "context", "source": source, "ignore_index": 255,
            "heads": REGISTRY["context"].heads, "classes": {"sem": classes},  # as its classes-59 file spells them
            "splits": {s: {"ids": rel[s], "images": {"rgb": {"dir": "rgb", "ext": ".jpg"}},
                           "labels": {"sem": {"dir": "labels", "ext": ".png"}}} for s in splits},
            "sizes": {s: len(v) for s, v in splits.items()},
        }
        atomic_write_json(out / "dataset.json", meta)
        print(f"context: train {len(splits['train'])}, val {len(splits['val'])} ({len(ids)} labels converted)")
        return meta
