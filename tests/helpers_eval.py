"""A tiny saved FCN and a tiny dataset.json in the real layout (not a test module): evaluation's tests and the
bench's use them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fcnlib.files.io import read_label, write_label_png
from fcnlib.models import build_fcn, save_model
from fcnlib.models.preprocessing import CAFFE_VGG

CLASSES = ["background", "thing", "stuff"]


def save_tiny(path: Path, *, variant: str = "fcn32s", heads: dict | None = None, winner: int | None = None,
              modalities: tuple[str, ...] = ("rgb",)) -> torch.nn.Module:
    """A real build_fcn net at 1/16 width; score layers are zero (the paper's init) so every pixel predicts
    class 0, unless `winner` biases score_fr so that class wins everywhere."""
    model = build_fcn(variant, "vgg16", num_classes=len(CLASSES), width=0.0625, heads=heads)
    if winner is not None:
        with torch.no_grad():
            for name, mod in model.named_children():
                if name.startswith("score_fr"):
                    mod.bias[winner] = 5.0
    meta = {"arch": model.arch, "modalities": list(modalities), "classes": CLASSES,
            "preprocessing": {m: CAFFE_VGG.to_dict() for m in modalities}, "config_hash": "abc123"}
    save_model(model, meta, path)
    return model


def make_dataset(root: Path, n: int = 3, heads: dict | None = None,
                 sizes=((37, 45), (40, 33), (29, 51))) -> Path:
    """dataset.json + JPEG images + palette label PNGs (255 = void) in the ARCHITECTURE layout."""
    heads = heads or {"sem": len(CLASSES)}
    rng = np.random.default_rng(0)
    ids = [f"img_{i:03d}" for i in range(n)]
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "val.txt").write_text("\n".join(ids) + "\n")
    for i, id_ in enumerate(ids):
        h, w = sizes[i % len(sizes)]
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        (root / "rgb").mkdir(exist_ok=True)
        Image.fromarray(img).save(root / "rgb" / f"{id_}.jpg", quality=90)
        for head, k in heads.items():
            lab = rng.integers(0, k, (h, w)).astype(np.uint8)
            lab[:3] = 255
            write_label_png(root / f"labels_{head}" / f"{id_}.png", lab)
    spec = {"name": "tiny", "source": "demo", "ignore_index": 255, "heads": heads,
            "classes": {h: (CLASSES if k == len(CLASSES) else [f"{h}{j}" for j in range(k)])
                        for h, k in heads.items()},
            "splits": {"val": {"ids": "splits/val.txt", "images": {"rgb": {"dir": "rgb", "ext": ".jpg"}},
                               "labels": {h: {"dir": f"labels_{h}", "ext": ".png"} for h in heads}}}}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root / "dataset.json"


def labels_of(ds_json: Path, head: str = "sem", n: int = 3) -> list[np.ndarray]:
    root = ds_json.parent
    return [read_label(root / f"labels_{head}" / f"img_{i:03d}.png", 256) for i in range(n)]


def conv_output_dtypes(run: Callable[[], object]) -> set[torch.dtype]:
    """dtypes the Conv2d layers produced while `run()` ran (a global forward hook)."""
    seen: set[torch.dtype] = set()

    def hook(mod, args, out):
        if isinstance(mod, torch.nn.Conv2d):
            seen.add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        run()
    finally:
        handle.remove()
    return seen
