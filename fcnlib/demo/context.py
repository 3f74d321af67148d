"""PASCAL-Context (VOC 2010 tar + trainval.tar.gz label MATs + classes-59.txt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcnlib.data.prepare.context import RAW_SPELLING
from fcnlib.demo.encode import jpeg_bytes, mat_bytes, text_bytes, write_tar
from fcnlib.demo.paint import SHAPE_P, SHAPES, class_appearance, draw_size, paint, shape_mask, voc_ids
from fcnlib.facts.datasets import CONTEXT59_CLASSES
from fcnlib.files.io import atomic_write


def _context_label_table() -> tuple[list[str], dict[str, int]]:
    """A 459-entry labels.txt (ids 1..459) holding the 59 task classes under the raw list's spellings
    (table, bedclothes, cloth) at fixed scattered ids, the rest named filler classes."""
    task = [RAW_SPELLING.get(c, c) for c in CONTEXT59_CLASSES[1:]]
    order = np.random.default_rng(459).permutation(459) + 1
    ids = {name: int(order[i]) for i, name in enumerate(task)}
    used = set(ids.values())
    fillers = [i for i in range(1, 460) if i not in used]
    names = {v: k for k, v in ids.items()}
    for j, i in enumerate(fillers):
        names[i] = f"other thing {j + 1}"
        ids[names[i]] = i
    return [f"{i}: {names[i]}" for i in range(1, 460)], ids


def write_context(out: Path, seed: int, n_train: int, n_val: int, image_size: tuple[int, int]) -> None:
    lines, raw_ids = _context_label_table()
    rng = np.random.default_rng([seed, 4])
    taken: set[str] = set()
    train = voc_ids(rng, n_train, (2008, 2009, 2010), taken)
    val = voc_ids(rng, n_val, (2008, 2009, 2010), taken)
    # paint in the 60-class target space; raw ids are drawn from it (fillers → background 0)
    app = class_appearance(60, salt=7)
    app[0][0] = np.array([120.0, 116.0, 108.0], np.float32)
    fill_ids = [raw_ids[f"other thing {j}"] for j in (1, 2, 3, 4)]
    task_raw = np.array([0] + [raw_ids[RAW_SPELLING.get(c, c)] for c in CONTEXT59_CLASSES[1:]], np.uint16)
    stuff = [CONTEXT59_CLASSES.index(c) for c in ("sky", "wall", "grass", "ground", "floor", "road", "water",
                                                  "building", "tree", "ceiling", "mountain", "snow")]
    things = [i for i in range(1, 60) if i not in stuff]
    jpgs, mats = {}, {}
    for k, iid in enumerate(sorted(taken)):
        r = np.random.default_rng([seed, 4, k])
        h, w = draw_size(r, image_size)
        cls = np.zeros((h, w), np.uint8)
        split_row = int(r.uniform(0.3, 0.7) * h)
        cls[:split_row] = stuff[k % len(stuff)]
        cls[split_row:] = stuff[(k * 5 + 3) % len(stuff)]
        for j in range(int(r.integers(2, 5))):
            c = things[(k * 3 + j * 11) % len(things)]
            cls[shape_mask(r, h, w, str(r.choice(SHAPES, p=SHAPE_P)))] = c
        bg = shape_mask(r, h, w, "blob")  # a region of some non-task class: background in the 59 task
        cls[bg] = 0
        jpgs[iid] = jpeg_bytes(paint(cls, app, r))
        raw = task_raw[cls]
        raw[bg] = fill_ids[k % len(fill_ids)]
        mats[iid] = mat_bytes({"LabelMap": raw.astype(np.uint16)})
    voc: dict[str, bytes] = {f"VOCdevkit/VOC2010/JPEGImages/{i}.jpg": b for i, b in jpgs.items()}
    voc["VOCdevkit/VOC2010/ImageSets/Main/train.txt"] = text_bytes(train)
    voc["VOCdevkit/VOC2010/ImageSets/Main/val.txt"] = text_bytes(val)
    voc["VOCdevkit/VOC2010/ImageSets/Main/trainval.txt"] = text_bytes(sorted(train + val))
    write_tar(out / "VOCtrainval_03-May-2010.tar", voc)
    ctx = {f"trainval/{i}.mat": b for i, b in mats.items()}
    ctx["labels.txt"] = text_bytes(lines)
    write_tar(out / "trainval.tar.gz", ctx, gz=True)
    with atomic_write(out / "classes-59.txt", "wb") as f:
        f.write(text_bytes(f"{i}: {c}" for i, c in enumerate(CONTEXT59_CLASSES)))
