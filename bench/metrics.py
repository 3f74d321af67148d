"""Confusion-matrix throughput on 500×500 21-class maps: one bincount vs per-class masks.

    python bench/metrics.py [--images 200] [--json out.json]

`run()` is the entry point a single bench driver can call; it returns (and optionally writes) a dict.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fcnlib.eval.metrics import ConfusionMatrix  # noqa: E402


def per_class_masks(label: np.ndarray, pred: np.ndarray, n: int, acc: np.ndarray) -> None:
    """The straightforward method: per class, boolean masks for GT, prediction and their overlap."""
    valid = label < n
    for c in range(n):
        g = (label == c) & valid
        p = (pred == c) & valid
        acc[c, 0] += np.count_nonzero(g & p)  # intersection
        acc[c, 1] += np.count_nonzero(g)
        acc[c, 2] += np.count_nonzero(p)


def _maps(count: int, size: int, n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        lab = rng.integers(0, n, (size, size), dtype=np.uint8)
        lab[: size // 20] = 255  # a void band, as around VOC object borders
        pred = rng.integers(0, n, (size, size)).astype(np.int64)  # argmax output dtype
        out.append((lab, pred))
    return out


def _best_rate(fn: Any, maps: list, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(maps)
        best = min(best, time.perf_counter() - t0)
    return len(maps) / best


def run(json_out: str | Path | None = None, images: int = 100, size: int = 500, n: int = 21,
        repeats: int = 3) -> dict[str, Any]:
    """Images/s of ConfusionMatrix.update and of per-class masks (best of `repeats`), and their ratio.

    Predictions are int64 (torch argmax output); the uint8 figure is the dtype fcnlib.eval.evaluate passes.
    """
    maps = _maps(images, size, n)
    cm = ConfusionMatrix(n)
    ref = np.zeros((n, 3), np.int64)

    def fast(ms: list) -> None:
        for lab, pred in ms:
            cm.update(lab, pred)

    def slow(ms: list) -> None:
        for lab, pred in ms:
            per_class_masks(lab, pred, n, ref)

    fast_rate = _best_rate(fast, maps, repeats)
    maps_u8 = [(lab, pred.astype(np.uint8)) for lab, pred in maps]  # what fcnlib.eval.evaluate passes
    fast_u8_rate = _best_rate(fast, maps_u8, repeats)
    slow_rate = _best_rate(slow, maps[: max(1, images // 4)], repeats)
    # both methods must agree on the IU they imply (same maps, accumulated `repeats` times each)
    cm_check = ConfusionMatrix(n)
    ref_check = np.zeros((n, 3), np.int64)
    for lab, pred in maps[:5]:
        cm_check.update(lab, pred)
        per_class_masks(lab, pred, n, ref_check)
    m = cm_check.mat
    agree = bool(np.array_equal(np.diag(m), ref_check[:, 0]) and np.array_equal(m.sum(1), ref_check[:, 1])
                 and np.array_equal(m.sum(0), ref_check[:, 2]))
    result = {
        "benchmark": "confusion_matrix",
        "map_size": [size, size], "classes": n, "images": images, "repeats": repeats,
        "bincount_images_per_s": round(fast_rate, 1),
        "bincount_uint8_pred_images_per_s": round(fast_u8_rate, 1),
        "per_class_mask_images_per_s": round(slow_rate, 1),
        "speedup": round(fast_rate / slow_rate, 2),
        "methods_agree": agree,
        "machine": platform.processor() or platform.machine(),
        "numpy": np.__version__,
    }
    if json_out is not None:
        from fcnlib.files.io import atomic_write_json

        atomic_write_json(json_out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    print(json.dumps(run(a.json, images=a.images, repeats=a.repeats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
