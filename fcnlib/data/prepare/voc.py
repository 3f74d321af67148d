"""PASCAL VOC + SBD → data/pascal/dataset.json with the paper's splits.

Splits written (when their inputs are given):
  train        SBD train (8,498), images from SBD img/, labels = SBD cls converted to PNG
  seg11valid   VOC2011 seg val − SBD train (736): the paper's validation set
  voc11train   VOC2011 seg train (1,112), for the training-data ablation
  trainaug     (VOC12 train ∪ SBD train ∪ SBD val) − VOC12 val (10,582); labels VOC12's PNG, else SBD's
  val12        VOC12 seg val (1,449)
  train_noval  SBD's train_noval.txt, if given (labels from SBD)
  test11/12    only where ImageSets/Segmentation/test.txt exists AND every id has a label (demo data)
dataset.json is written last, so its presence means every split's files were checked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fcnlib.data import splits as S
from fcnlib.data.dataset import staged_prepare
from fcnlib.data.prepare.sbd import convert_sbd, find_sbd_root
from fcnlib.errors import DataError
from fcnlib.facts.datasets import REGISTRY
from fcnlib.files.io import atomic_write_json, place_file


def find_voc_root(voc_dir: Path, year: int) -> Path:
    """VOC<year> folder (with ImageSets/Segmentation) inside an extracted VOCtrainval tar."""
    voc_dir = Path(voc_dir)
    sub = Path("VOCdevkit") / f"VOC{year}"
    for cand in (voc_dir / "TrainVal" / sub, voc_dir / sub, voc_dir / f"VOC{year}", voc_dir):
        if (cand / "ImageSets" / "Segmentation").is_dir():
            return cand
    raise DataError(f"{voc_dir}: no VOC{year} folder with ImageSets/Segmentation (looked for "
                    f"{voc_dir / sub} and {voc_dir / 'TrainVal' / sub}); point it at the extracted "
                    f"VOCtrainval tar of {year}, or delete the extracted folder and rerun the extract rule")


def _stems(d: Path, ext: str) -> set[str]:
    try:
        return {e.name[: -len(ext)] for e in os.scandir(d) if e.name.endswith(ext)}
    except FileNotFoundError:
        return set()


class _Split:
    def __init__(self, ids: Sequence[str], img_dir: Path, lbl_dir: Path, img_ext: str = ".jpg") -> None:
        self.ids, self.img_dir, self.lbl_dir, self.img_ext = list(ids), img_dir, lbl_dir, img_ext

    def check_files(self, name: str) -> None:
        """Every id has an image and a label (one listing per folder, no per-file stat)."""
        for d, ext, what in ((self.img_dir, self.img_ext, "image"), (self.lbl_dir, ".png", "label")):
            have = _stems(d, ext)
            missing = [i for i in self.ids if i not in have]
            if missing:
                raise DataError(f"{d / (missing[0] + ext)}: {what} of id {missing[0]} in split '{name}' is "
                                f"missing ({len(missing)} of {len(self.ids)} missing); the archive was "
                                f"extracted incompletely or the split list belongs to another dataset "
                                f"version — delete the extracted folder and rerun")


def _labelled_test(root: Path) -> list[str] | None:
    """Ids of ImageSets/Segmentation/test.txt when every one has a label PNG (real VOC test has none)."""
    lst = root / "ImageSets" / "Segmentation" / "test.txt"
    if not lst.is_file():
        return None
    ids = S.read_id_list(lst)
    have = _stems(root / "SegmentationClass", ".png")
    if not ids or any(i not in have for i in ids):
        print(f"  skipping {lst}: no labels for its images (the real VOC test labels are not public)")
        return None
    return ids


def merge_labels(ids: Sequence[str], primary: Path, fallback: Path, out_dir: Path) -> dict[str, int]:
    """out_dir/<id>.png = primary/<id>.png where it exists, else fallback/<id>.png. Returns counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prim, fb = _stems(primary, ".png"), _stems(fallback, ".png")
    counts = {"primary": 0, "fallback": 0}
    for i in ids:
        src_dir = primary if i in prim else fallback if i in fb else None
        if src_dir is None:
            raise DataError(f"{fallback / (i + '.png')}: no label for id {i} in {primary} or {fallback}; "
                            f"the SBD conversion is incomplete — rerun the prepare rule")
        counts["primary" if src_dir is primary else "fallback"] += 1
        place_file(src_dir / f"{i}.png", out_dir / f"{i}.png")
    return counts


def _rel(p: Path, start: Path) -> str:
    try:
        return os.path.relpath(p, start)
    except ValueError:  # different drives (Windows): keep it absolute
        return str(p)


def prepare_pascal(out_dir: Path, *, voc2011_dir: Path, sbd_dir: Path, voc2012_dir: Path | None = None,
                   seg11valid_list: Path | None = None, train_noval_list: Path | None = None,
                   source: str = "real", workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Convert SBD, derive and check the splits, write out_dir/splits/*.txt and out_dir/dataset.json.

    *_dir are the extracted archive roots. Returns the dataset.json content.
    """
    # out_dir is built whole in a staging folder and swapped in at the end: no label of an older run stays.
    with staged_prepare(out_dir, source, "prepare_pascal") as out_dir:
        v11 = find_voc_root(voc2011_dir, 2011)
        sbd = find_sbd_root(sbd_dir)
        seg = v11 / "ImageSets" / "Segmentation"
        voc11_train, voc11_val = S.read_id_list(seg / "train.txt"), S.read_id_list(seg / "val.txt")
        sbd_train, sbd_val = S.read_id_list(sbd / "train.txt"), S.read_id_list(sbd / "val.txt")
        sbd_png = out_dir / "sbd_cls"

        sp: dict[str, _Split] = {}
        sp["train"] = _Split(sbd_train, sbd / "img", sbd_png)
        seg11 = S.seg11valid(voc11_val, sbd_train)
        if seg11valid_list is not None:
            S.check_same(seg11, S.read_id_list(seg11valid_list), "seg11valid", seg11valid_list)
        sp["seg11valid"] = _Split(seg11, v11 / "JPEGImages", v11 / "SegmentationClass")
        sp["voc11train"] = _Split(voc11_train, v11 / "JPEGImages", v11 / "SegmentationClass")
        if (t := _labelled_test(v11)) is not None:
            sp["test11"] = _Split(t, v11 / "JPEGImages", v11 / "SegmentationClass")

        sbd_needed = set(sbd_train) | set(sbd_val)  # the whole SBD label set: any split may draw on it
        if train_noval_list is not None:
            tn = S.read_id_list(train_noval_list)
            sp["train_noval"] = _Split(tn, sbd / "img", sbd_png)
            sbd_needed |= set(tn)
        v12 = None
        if voc2012_dir is not None:
            v12 = find_voc_root(voc2012_dir, 2012)
            seg12 = v12 / "ImageSets" / "Segmentation"
            v12_train, v12_val = S.read_id_list(seg12 / "train.txt"), S.read_id_list(seg12 / "val.txt")
            ta = S.trainaug(v12_train, sbd_train, sbd_val, v12_val)
            sp["trainaug"] = _Split(ta, v12 / "JPEGImages", out_dir / "trainaug_cls")
            sp["val12"] = _Split(v12_val, v12 / "JPEGImages", v12 / "SegmentationClass")
            if (t := _labelled_test(v12)) is not None:
                sp["test12"] = _Split(t, v12 / "JPEGImages", v12 / "SegmentationClass")

        for a, b in S.TRAIN_VAL_PAIRS:  # fail before any slow work
            if a in sp and b in sp:
                S.check_disjoint(a, sp[a].ids, b, sp[b].ids)

        convert_sbd(sbd, sbd_png, sorted(sbd_needed), workers=workers, progress=progress)
        if v12 is not None:
            counts = merge_labels(sp["trainaug"].ids, v12 / "SegmentationClass", sbd_png,
                                  out_dir / "trainaug_cls")
            print(f"  trainaug labels: {counts['primary']} from VOC2012 SegmentationClass, "
                  f"{counts['fallback']} from SBD")

        for name, s in sp.items():
            s.check_files(name)
            S.write_id_list(out_dir / "splits" / f"{name}.txt", s.ids)
        print(f"pascal splits ({source}):\n" + S.size_report({k: v.ids for k, v in sp.items()}, source == "real"))

        # the archives read in place, named as the dataset's other roots (the path policy of load_dataset_meta)
        roots = sorted({_rel(r, out_dir) for r in (v11, sbd, v12) if r is not None
                        and not Path(r).resolve().is_relative_to(out_dir.resolve())})
        meta: dict[str, Any] = {
            "name": "pascal", "source": source, "ignore_index": 255,
            **REGISTRY["pascal"].described(), "roots": roots,
            "splits": {name: {"ids": f"splits/{name}.txt",
                              "images": {"rgb": {"dir": _rel(s.img_dir, out_dir), "ext": s.img_ext}},
                              "labels": {"sem": {"dir": _rel(s.lbl_dir, out_dir), "ext": ".png"}}}
                       for name, s in sp.items()},
        }
        atomic_write_json(out_dir / "dataset.json", meta)
        return meta
