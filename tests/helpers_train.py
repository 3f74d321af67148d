"""Toy training data and configs (not a test module): the trainer's tests and the ones beside it use them.

A synthetic dataset in the real on-disk layout (dataset.json + split list + RGB/HHA PNG images + palette label
PNGs) and a trainer config for a tiny width-1/16 VGG16 FCN, so each training takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fcnlib.files.io import atomic_write_json, write_label_png, write_png

WIDTH = 0.0625
COLOURS = {1: (220, 40, 40), 2: (40, 60, 220)}


def make_dataset(root: Path, n: int = 4, sizes=((64, 64),), seed: int = 0, two_heads: bool = False,
                 hha: bool = False, name: str = "toy") -> Path:
    """Background (grey noise, class 0) with one big coloured rectangle: red = 1, blue = 2.
    With two_heads the second head 'geo' is 1 where the object is, 0 elsewhere, void on a 1-px border."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        img = rng.integers(100, 150, (h, w, 3)).astype(np.uint8)
        lab = np.zeros((h, w), np.uint8)
        c = 1 + i % 2
        y0, x0 = rng.integers(0, h // 3), rng.integers(0, w // 3)
        y1, x1 = y0 + h // 2, x0 + w // 2
        img[y0:y1, x0:x1] = COLOURS[c]
        lab[y0:y1, x0:x1] = c
        iid = f"im{i:03d}"
        ids.append(iid)
        write_png(root / "img" / f"{iid}.png", img)
        if hha:  # a second modality that carries the same content in other channels
            write_png(root / "hha" / f"{iid}.png", np.ascontiguousarray(img[..., ::-1]))
        write_label_png(root / "sem" / f"{iid}.png", lab)
        if two_heads:
            geo = (lab > 0).astype(np.uint8)
            geo[0, :] = 255
            write_label_png(root / "geo" / f"{iid}.png", geo)
    (root / "ids.txt").write_text("\n".join(ids) + "\n")
    images = {"rgb": {"dir": "img", "ext": ".png"}}
    if hha:
        images["hha"] = {"dir": "hha", "ext": ".png"}
    labels = {"sem": {"dir": "sem", "ext": ".png"}}
    heads = {"sem": 3}
    classes = {"sem": ["background", "red", "blue"]}
    if two_heads:
        labels["geo"] = {"dir": "geo", "ext": ".png"}
        heads["geo"] = 2
        classes["geo"] = ["ground", "object"]
    split = {"ids": "ids.txt", "images": images, "labels": labels}
    atomic_write_json(root / "dataset.json", {"name": name, "source": "demo", "ignore_index": 255,
                                              "heads": heads, "classes": classes,
                                              "splits": {"train": split, "val": split}})
    return root / "dataset.json"


def make_cfg(ds: Path, **over) -> dict:
    cfg = {
        "experiment": "toy-fcn32s", "dataset_json": str(ds), "train_split": "train", "val_split": "val",
        "val_max_images": None, "modalities": ["rgb"],
        "arch": {"variant": "fcn32s", "backbone": "vgg16", "width": WIDTH, "num_classes": 3,
                 "in_channels": 3, "heads": None},
        "init": {"kind": "none"}, "fixed": False,
        "recipe": {"name": "demo", "batch_size": 1, "lr": 2e-3, "momentum": 0.9, "weight_decay": 0.0,
                   "bias_lr_mult": 1.0, "bias_decay": False, "loss": "mean", "optimizer": "adam",
                   "score_lr_mult": 30.0, "dropout": 0.0},
        "iterations": 10, "val_every": 0, "log_every": 5, "checkpoint_every": 0,
        "augment": {"mirror": False, "jitter": 0}, "loss_sampling": 1.0, "class_balance": False,
        "seed": 0, "num_workers": 0, "amp": "off", "channels_last": False, "config_hash": "h0",
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict) and k != "init":
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def read_log(path: Path) -> list[dict]:
    return [json.loads(s) for s in path.read_text().splitlines()]
