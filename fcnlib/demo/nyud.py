"""NYUDv2 in the FCN layout (nyud.tar.gz): rendered rooms with depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcnlib.data.hha import CAMERAS
from fcnlib.demo.encode import mat_bytes, png_bytes, text_bytes, write_tar
from fcnlib.demo.paint import ellipse_mask
from fcnlib.demo.scenes import render_room


def write_nyud(out: Path, seed: int, n_train: int, n_val: int, image_size: tuple[int, int]) -> None:
    w = int(max(image_size))
    factor = w / 560.0
    h = int(round(425 * factor))
    camera = CAMERAS["nyu-color-gupta-crop"].scaled(factor)
    rng = np.random.default_rng([seed, 2])
    n_tr = max(1, n_train // 2)
    n_va = max(1, n_train - n_tr)
    ids = sorted(int(i) for i in rng.choice(np.arange(5001, 6450), n_tr + n_va + n_val, replace=False))
    perm = rng.permutation(len(ids))
    train = sorted(str(ids[i]) for i in perm[:n_tr])
    val = sorted(str(ids[i]) for i in perm[n_tr:n_tr + n_va])
    test = sorted(str(ids[i]) for i in perm[n_tr + n_va:])
    members: dict[str, bytes] = {}
    for iid in sorted(train + val + test):
        scene = render_room(int(seed) * 100_000 + int(iid), camera, h, w)
        depth_mm = np.clip(np.rint(scene["depth_m"].astype(np.float64) * 1000.0), 0, 65535).astype(np.uint16)
        r = np.random.default_rng([seed, 2, int(iid)])
        raw = depth_mm.copy()
        # raw Kinect depth has holes (0 = missing) near edges and on dark/shiny surfaces
        for _ in range(int(r.integers(1, 4))):
            hole = ellipse_mask(h, w, r.uniform(0, h), r.uniform(0, w), r.uniform(2, h / 6), r.uniform(2, w / 6), 0.0)
            raw[hole] = 0
        raw[:, : int(r.integers(0, 3))] = 0
        members[f"nyud/data/images/img_{iid}.png"] = png_bytes(scene["rgb"])
        members[f"nyud/data/depth/img_{iid}.png"] = png_bytes(depth_mm)
        members[f"nyud/data/rawdepth/img_{iid}.png"] = png_bytes(raw)
        members[f"nyud/segmentation/img_{iid}.mat"] = mat_bytes({"segmentation": scene["label"].astype(np.uint8)})
    members["nyud/train.txt"] = text_bytes(train)
    members["nyud/val.txt"] = text_bytes(val)
    members["nyud/test.txt"] = text_bytes(test)
    write_tar(out / "nyud.tar.gz", members, gz=True)
