"""Spoiled extracted datasets (not a test module): labels shifted, files added, as an archive later corrected
upstream would have been; the stale-output tests rerun preparation over them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import loadmat, savemat


def remat(path: Path, key: str, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    savemat(path, {key: fn(np.asarray(loadmat(path)[key]))})


def shift_labels(a: np.ndarray, top: int) -> np.ndarray:
    return np.where(a > 0, a % top + 1, a).astype(a.dtype)


def copy_extra(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def spoil_nyud(ext: Path) -> None:
    """Labels shifted, depth off by 37 mm, and one extra test image the corrected archive does not have."""
    root = ext / "nyud" / "nyud"
    for mat in (root / "segmentation").glob("*.mat"):
        remat(mat, "segmentation", lambda s: shift_labels(s, 40))
    for png in (root / "data" / "depth").glob("*.png"):
        d = np.asarray(Image.open(png)).astype(np.uint16)
        Image.fromarray(np.where(d > 0, d + 37, 0).astype(np.uint16)).save(png)
    first = (root / "test.txt").read_text().split()[0]
    for sub, ext_ in (("data/images", ".png"), ("data/depth", ".png"), ("data/rawdepth", ".png"),
                      ("segmentation", ".mat")):
        if (root / sub).is_dir():
            copy_extra(root / sub / f"img_{first}{ext_}", root / sub / f"img_9999{ext_}")
    with open(root / "test.txt", "a") as f:
        f.write("9999\n")
