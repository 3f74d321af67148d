"""SIFT Flow (SiftFlowDataset.zip): semantic and geometric labels, with the trainval/test lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcnlib.demo.encode import jpeg_bytes, mat_bytes, text_bytes, write_zip
from fcnlib.demo.paint import class_appearance, ellipse_mask, paint, shape_mask
from fcnlib.files.io import atomic_write

# -- SIFT Flow ---------------------------------------------------------------------------------------------

SIFTFLOW_SKY = (16, 28, 31)  # moon, sky, sun  (1-based semantic ids)
SIFTFLOW_GROUND = (10, 11, 14, 15, 21, 22, 24, 25, 26)  # crosswalk desert field grass river road sand sea sidewalk
_SF_THIN = (13, 20, 30)            # fence, pole, streetlight
_SF_SMALL = (3, 8, 9, 18, 27, 33)  # bird, car, cow, person, sign, window
_SF_BIG = (1, 2, 4, 5, 6, 7, 12, 17, 19, 23, 29, 32)
_SF_CATS = ("coast", "forest", "highway", "insidecity", "mountain", "opencountry", "street", "tallbuilding")
_SF_TAGS = ("natu", "bost", "urb", "art", "land", "a", "n", "sharp", "par", "gre")


def siftflow_geo(sem: np.ndarray) -> np.ndarray:
    """Geometric class (1 sky, 2 horizontal, 3 vertical; −1 void) of a SIFT Flow semantic map."""
    geo = np.full(sem.shape, 3, np.int16)
    geo[np.isin(sem, SIFTFLOW_SKY)] = 1
    geo[np.isin(sem, SIFTFLOW_GROUND)] = 2
    geo[sem == 0] = -1
    return geo


def _siftflow_scene(rng: np.random.Generator, s: int, k: int) -> np.ndarray:
    sem = np.zeros((s, s), np.uint8)
    horizon = int(rng.uniform(0.3, 0.6) * s)
    sem[:horizon] = 28
    sem[horizon:] = SIFTFLOW_GROUND[k % len(SIFTFLOW_GROUND)]
    if rng.random() < 0.3:
        sem[ellipse_mask(s, s, rng.uniform(2, horizon * 0.6 + 2), rng.uniform(0, s), 3, 3, 0)] = 31 if k % 5 else 16
    for j in range(int(rng.integers(2, 5))):
        pick = (k + j) % 3
        if pick == 0:
            c = _SF_BIG[(k * 5 + j) % len(_SF_BIG)]
            mask = shape_mask(rng, s, s, "blob" if j % 2 else "rect")
        elif pick == 1:
            c = _SF_THIN[(k + j) % len(_SF_THIN)]
            mask = shape_mask(rng, s, s, "thin")
        else:
            c = _SF_SMALL[(k * 3 + j) % len(_SF_SMALL)]
            mask = shape_mask(rng, s, s, "small")
        sem[mask] = c
    if rng.random() < 0.4:  # unlabelled patches, as in the real annotations
        sem[ellipse_mask(s, s, rng.uniform(0, s), rng.uniform(0, s), rng.uniform(2, 6), rng.uniform(2, 6), 0)] = 0
    return sem


def write_siftflow(out: Path, seed: int, n_train: int, n_val: int, size: int) -> None:
    rng = np.random.default_rng([seed, 3])
    names: set[str] = set()
    while len(names) < n_train + n_val + 2:
        names.add(f"{rng.choice(_SF_CATS)}_{rng.choice(_SF_TAGS)}{int(rng.integers(1, 1000))}")
    ordered = sorted(names)
    perm = rng.permutation(len(ordered))
    unannotated = sorted(ordered[i] for i in perm[:2])   # in the zip, in no list (like the real two)
    trainval = [ordered[i] for i in perm[2:2 + n_train]]  # list order is shuffled, like the real lists
    test = [ordered[i] for i in perm[2 + n_train:]]
    app = class_appearance(34, salt=3)
    d = "spatial_envelope_256x256_static_8outdoorcategories"
    members: dict[str, bytes] = {}
    for k, iid in enumerate(ordered):
        r = np.random.default_rng([seed, 3, k])
        sem = _siftflow_scene(r, size, k)
        rgb = paint(sem, app, r)
        if iid in unannotated:
            sem = np.zeros_like(sem)
        members[f"Images/{d}/{iid}.jpg"] = jpeg_bytes(rgb)
        members[f"SemanticLabels/{d}/{iid}.mat"] = mat_bytes({"S": sem.astype(np.int16)})
        members[f"GeoLabels/{d}/{iid}.mat"] = mat_bytes({"S": siftflow_geo(sem)})
    write_zip(out / "SiftFlowDataset.zip", members)
    for name, lst in (("trainval", trainval), ("test", test)):
        with atomic_write(out / f"siftflow-{name}.txt", "wb") as f:
            f.write(text_bytes(lst))
