"""Deterministic offline demo data in the REAL raw on-disk formats (`fcn demo-data -o DIR`).

The demo files go through exactly the extract/prepare code the real downloads go through (same tar/zip
layouts, JPEG/PNG/MAT encodings, split-list relationships), only small: ~64–96 px images, a few dozen
to a few hundred per split, ImageNet "weights" at a reduced width. The same seed gives the same bytes on every run
(fixed archive mtimes/owners, sorted members, fixed encoder settings, MAT headers without dates).

Images are built to make the paper's effects visible at toy scale: every class has its own colour (a
farthest-point palette) and texture, objects are mostly whole blobs and boxes as in VOC, and some are
3–6 px bars or small discs that FCN-8s's skip fusion resolves and FCN-32s's coarse output loses.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import ConfigError
from .io import atomic_write, atomic_write_json, sha256_file, voc_palette

PathLike = str | os.PathLike

TAR_MTIME = 1306281600  # 2011-05-25, fixed so archives are byte-identical across runs
ZIP_DATE = (2011, 5, 25, 0, 0, 0)
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
ALL_PARTS = ("pascal", "nyud", "siftflow", "context", "weights", "released")

# -- encoders (bytes, deterministic) -------------------------------------------------------------


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 chroma so one-pixel coloured structures keep their colour after compression
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, subsampling=0, optimize=False)
    return buf.getvalue()


def _png(arr: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    buf = io.BytesIO()
    if palette is not None:
        im = Image.fromarray(arr.astype(np.uint8), mode="P")
        im.putpalette(palette.reshape(-1).tolist())
    else:
        im = Image.fromarray(arr)
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _mat(obj: dict[str, Any]) -> bytes:
    """MATLAB v5 .mat bytes; scipy stamps the creation time into the 116-byte header, so we fix it."""
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, obj, format="5", do_compression=True, oned_as="column")
    data = bytearray(buf.getvalue())
    header = b"MATLAB 5.0 MAT-file, Platform: fcnlib demo, Created on: Wed May 25 00:00:00 2011"
    data[:116] = header.ljust(116, b" ")
    return bytes(data)


def _text(lines: Iterable[str]) -> bytes:
    return "".join(f"{s}\n" for s in lines).encode()


def _dirs_of(names: Iterable[str]) -> list[str]:
    out: set[str] = set()
    for n in names:
        parts = n.split("/")[:-1]
        for k in range(1, len(parts) + 1):
            out.add("/".join(parts[:k]))
    return sorted(out)


def _write_tar(path: Path, members: dict[str, bytes], gz: bool = False) -> None:
    """A tar (optionally gzip) with directory entries, sorted members, fixed owner/mode/mtime."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for d in _dirs_of(members):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, TAR_MTIME
            tf.addfile(ti)
        for name in sorted(members):
            data = members[name]
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, TAR_MTIME
            tf.addfile(ti, io.BytesIO(data))
    payload = raw.getvalue()
    if gz:
        zbuf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=zbuf, mtime=0, compresslevel=6) as g:
            g.write(payload)
        payload = zbuf.getvalue()
    with atomic_write(path, "wb") as f:
        f.write(payload)


def _write_zip(path: Path, members: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for d in _dirs_of(members):
            zi = zipfile.ZipInfo(d + "/", date_time=ZIP_DATE)
            zi.external_attr = (0o40755 << 16) | 0x10
            zf.writestr(zi, b"")
        for name in sorted(members):
            zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o100644 << 16
            zf.writestr(zi, members[name], compresslevel=6)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


# -- appearance and scene painting ------------------------------------------------------------------


BACKGROUND_RGB = (118.0, 112.0, 100.0)  # VOC's muted grey-brown background, as in real photos


def _palette_order(levels: Sequence[float] = (20.0, 90.0, 160.0, 230.0)) -> np.ndarray:
    """The 64 colours of a 4×4×4 RGB grid in farthest-point order, starting away from the background:
    the first k colours are as far apart as the grid allows for every k, so any dataset's classes (and
    the first classes of each) differ clearly by colour, as real object classes do to a trained net."""
    grid = np.array([(r, g, b) for r in levels for g in levels for b in levels], np.float64)
    dist = np.linalg.norm(grid - np.array(BACKGROUND_RGB), axis=1)  # to the nearest colour taken so far
    order: list[int] = []
    for _ in range(len(grid)):
        k = int(np.argmax(dist))
        order.append(k)
        dist = np.minimum(dist, np.linalg.norm(grid - grid[k], axis=1))  # grid[k] itself drops to 0
    return grid[order].astype(np.float32)


_PALETTE = _palette_order()


def class_appearance(n: int, salt: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: base colour (n×3 float), texture kind (0–4) and texture period (px); fixed, seed-free.

    Appearance j = i + salt takes colour j of a farthest-point ordering of a 64-colour RGB grid (so a
    dataset's classes differ clearly by colour) and a texture kind/period cycling with co-prime periods.
    """
    j = np.arange(n) + salt
    colours = _PALETTE[j % len(_PALETTE)].copy()
    kinds = (j % 5).astype(np.int64)
    periods = (3.0 + (j * 3) % 5).astype(np.float32)
    return colours, kinds, periods


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int = 4) -> np.ndarray:
    """A low-frequency random field in about [-1, 1] (bilinear upsampling of a tiny grid)."""
    small = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BILINEAR), np.float32)


def paint(classes: np.ndarray, appearance: tuple[np.ndarray, np.ndarray, np.ndarray],
          rng: np.random.Generator, noise: float = 6.0, amp: float = 18.0) -> np.ndarray:
    """RGB uint8 for a class-id map: class colour + class texture + soft shading + pixel noise."""
    colours, kinds, periods = appearance
    h, w = classes.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    per = periods[classes]
    two_pi = np.float32(2 * np.pi)
    pats = np.stack([
        rng.normal(0.0, 0.5, size=(h, w)).astype(np.float32),            # speckle
        np.sin(two_pi * yy / per),                                        # horizontal stripes
        np.sin(two_pi * xx / per),                                        # vertical stripes
        np.sign(np.sin(two_pi * xx / per) * np.sin(two_pi * yy / per)),   # checker
        np.sin(two_pi * (xx + yy) / per),                                 # diagonal stripes
    ])
    tex = np.take_along_axis(pats, kinds[classes][None], 0)[0]
    shade = 1.0 + 0.12 * _smooth_field(rng, h, w)
    rgb = colours[classes] * shade[..., None] + amp * tex[..., None]
    rgb += rng.normal(0.0, noise, size=rgb.shape).astype(np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float, ang: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(ang), np.sin(ang)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _segment(h: int, w: int, y0: float, x0: float, y1: float, x1: float, width: float) -> np.ndarray:
    """Pixels within width/2 of the segment (y0,x0)–(y1,x1): poles, wires, bars."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0.0, 1.0)
    return (yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2 <= (width / 2.0) ** 2


def _shape(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    m = min(h, w)
    if kind == "blob":
        return _ellipse(h, w, rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w,
                        rng.uniform(0.16, 0.4) * m, rng.uniform(0.16, 0.4) * m, rng.uniform(0, np.pi))
    if kind == "rect":
        y0, x0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        mask = np.zeros((h, w), bool)
        mask[y0:y0 + int(rng.integers(8, max(9, h // 2))), x0:x0 + int(rng.integers(8, max(9, w // 2)))] = True
        return mask
    if kind == "thin":  # pole, wire or bar, 3–6 px wide: resolvable at stride 8, lost at stride 32
        orient = rng.integers(0, 3)
        width = float(rng.choice([3.0, 4.5, 6.0]))
        if orient == 0:  # vertical pole
            x = rng.uniform(0.05, 0.95) * w
            return _segment(h, w, rng.uniform(0, 0.3) * h, x, rng.uniform(0.7, 1.0) * h, x, width)
        if orient == 1:  # horizontal wire/bar
            y = rng.uniform(0.05, 0.95) * h
            return _segment(h, w, y, rng.uniform(0, 0.3) * w, y, rng.uniform(0.7, 1.0) * w, width)
        return _segment(h, w, rng.uniform(0, 0.3) * h, rng.uniform(0, 1) * w,
                        rng.uniform(0.7, 1.0) * h, rng.uniform(0, 1) * w, width)
    # "small": a cluster of 2–5 small discs
    mask = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(2, 6))):
        r = rng.uniform(2.5, 5.0)
        mask |= _ellipse(h, w, rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w, r, r, 0.0)
    return mask


_SHAPES = ("blob", "rect", "thin", "small")
_SHAPE_P = (0.55, 0.25, 0.15, 0.05)  # mostly whole objects, as in VOC; enough thin ones for Figure 4


def _void_band(classes: np.ndarray) -> np.ndarray:
    """Background pixels touching an object (4-neighbourhood): VOC marks object outlines void."""
    obj = classes != 0
    near = np.zeros_like(obj)
    near[1:] |= obj[:-1]
    near[:-1] |= obj[1:]
    near[:, 1:] |= obj[:, :-1]
    near[:, :-1] |= obj[:, 1:]
    return near & ~obj


def _size(rng: np.random.Generator, image_size: tuple[int, int]) -> tuple[int, int]:
    lo, hi = image_size
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


# -- PASCAL VOC 2011/2012 + SBD ---------------------------------------------------------------------


def _voc_ids(rng: np.random.Generator, n: int, years: Sequence[int], taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        i = f"{int(rng.choice(years))}_{int(rng.integers(1, 9000)):06d}"
        if i not in taken:
            taken.add(i)
            out.append(i)
    return sorted(out)


def _voc_scene(rng: np.random.Generator, h: int, w: int, objects: Sequence[int]) -> np.ndarray:
    classes = np.zeros((h, w), np.uint8)
    for c in objects:
        classes[_shape(rng, h, w, str(rng.choice(_SHAPES, p=_SHAPE_P)))] = c
    return classes


def _pascal(out: Path, seed: int, n_train: int, n_val: int, image_size: tuple[int, int]) -> None:
    rng = np.random.default_rng([seed, 1])
    taken: set[str] = set()
    n_ov = max(2, n_val // 4)            # VOC2011 seg val ids also in SBD train (removed by seg11valid)
    n_t11 = max(4, n_val)                # VOC2011 seg train
    t11 = _voc_ids(rng, n_t11, (2007, 2008, 2009, 2010, 2011), taken)
    v11 = _voc_ids(rng, n_val + n_ov, (2007, 2008, 2009, 2010, 2011), taken)
    v11_in_sbd = sorted(rng.choice(v11, n_ov, replace=False).tolist())
    t11_in_sbd = sorted(rng.choice(t11, n_t11 // 2, replace=False).tolist())
    sbd_new = _voc_ids(rng, max(1, n_train - n_ov - len(t11_in_sbd)), (2008, 2009, 2010, 2011), taken)
    sbd_train = sorted(v11_in_sbd + t11_in_sbd + sbd_new)
    rest_t11 = sorted(set(t11) - set(t11_in_sbd))
    sbd_val = sorted(rest_t11[: max(2, n_val // 4)] + _voc_ids(rng, max(2, n_val // 4), (2008, 2009, 2010), taken))
    t12 = sorted(t11 + _voc_ids(rng, max(2, n_val // 4), (2012,), taken))
    v12 = sorted(v11 + _voc_ids(rng, max(2, n_val // 4), (2012,), taken))
    # test sets WITH labels so the demo can score Table 3's test columns (the real test labels are
    # not public and the real trainval tars hold no test.txt); VOC2012 test ⊇ VOC2011 test
    test11 = _voc_ids(rng, n_val, (2008, 2009, 2010, 2011), taken)
    test12 = sorted(test11 + _voc_ids(rng, max(2, n_val // 4), (2012,), taken))
    seg11valid = sorted(set(v11) - set(sbd_train))
    train_noval = sorted((set(sbd_train) | set(sbd_val)) - set(v12))

    pal = voc_palette()
    jpgs: dict[str, bytes] = {}
    pngs: dict[str, bytes] = {}
    sbd_mats: dict[str, bytes] = {}
    all_ids = sorted(taken)
    n_obj_classes = len(VOC_CLASSES) - 1
    app = class_appearance(len(VOC_CLASSES))
    # background gets a muted grey-brown so objects stand out by colour, as in real photos
    app[0][0] = np.array(BACKGROUND_RGB, np.float32)
    for k, iid in enumerate(all_ids):
        r = np.random.default_rng([seed, 1, k])
        h, w = _size(r, image_size)
        # cycle through the classes so every class appears in every split
        objs = [1 + (k * 3 + j * 7) % n_obj_classes for j in range(int(r.integers(2, 5)))]
        classes = _voc_scene(r, h, w, objs)
        rgb = paint(classes, app, r)
        jpgs[iid] = _jpeg(rgb)
        label = classes.copy()
        label[_void_band(classes)] = 255
        pngs[iid] = _png(label, pal)
        sbd_mats[iid] = _sbd_mat(classes)

    voc11_ids = [i for i in all_ids if not i.startswith("2012_")]
    for year, root, ids, seg in (
        (2011, "TrainVal/VOCdevkit/VOC2011", voc11_ids, {"train": t11, "val": v11, "test": test11}),
        (2012, "VOCdevkit/VOC2012", all_ids, {"train": t12, "val": v12, "test": test12}),
    ):
        members: dict[str, bytes] = {}
        for iid in ids:
            members[f"{root}/JPEGImages/{iid}.jpg"] = jpgs[iid]
        for iid in sorted(set(seg["train"]) | set(seg["val"]) | set(seg["test"])):
            members[f"{root}/SegmentationClass/{iid}.png"] = pngs[iid]
        for name, lst in (("train", seg["train"]), ("val", seg["val"]), ("test", seg["test"]),
                          ("trainval", sorted(set(seg["train"]) | set(seg["val"])))):
            members[f"{root}/ImageSets/Segmentation/{name}.txt"] = _text(lst)
        members[f"{root}/ImageSets/Main/train.txt"] = _text(seg["train"])
        members[f"{root}/ImageSets/Main/val.txt"] = _text(seg["val"])
        fname = "VOCtrainval_25-May-2011.tar" if year == 2011 else "VOCtrainval_11-May-2012.tar"
        _write_tar(out / fname, members)

    sbd: dict[str, bytes] = {}
    for iid in sorted(set(sbd_train) | set(sbd_val)):
        sbd[f"benchmark_RELEASE/dataset/img/{iid}.jpg"] = jpgs[iid]
        sbd[f"benchmark_RELEASE/dataset/cls/{iid}.mat"] = sbd_mats[iid]
    sbd["benchmark_RELEASE/dataset/train.txt"] = _text(sbd_train)
    sbd["benchmark_RELEASE/dataset/val.txt"] = _text(sbd_val)
    _write_tar(out / "benchmark.tgz", sbd, gz=True)
    with atomic_write(out / "seg11valid.txt", "wb") as f:
        f.write(_text(seg11valid))
    with atomic_write(out / "train_noval.txt", "wb") as f:
        f.write(_text(train_noval))


def _sbd_mat(classes: np.ndarray) -> bytes:
    """SBD cls/*.mat: struct GTcls with Segmentation (uint8, no void), Boundaries (20×1 cell of sparse
    logical maps), CategoriesPresent (column of class ids) — read as loadmat(f)['GTcls'][0]['Segmentation'][0]."""
    from scipy.sparse import csc_matrix

    edge = np.zeros_like(classes, bool)
    edge[:, 1:] |= classes[:, 1:] != classes[:, :-1]
    edge[1:] |= classes[1:] != classes[:-1]
    bounds = np.empty((20, 1), dtype=object)
    for c in range(1, 21):
        m = classes == c
        bounds[c - 1, 0] = csc_matrix(edge & (m | np.roll(m, 1, 0) | np.roll(m, 1, 1)), dtype=bool)
    present = np.unique(classes[classes > 0]).astype(np.uint8).reshape(-1, 1)
    gt = {"Segmentation": classes.astype(np.uint8), "Boundaries": bounds, "CategoriesPresent": present}
    return _mat({"GTcls": gt})


# -- NYUDv2 (FCN layout) --------------------------------------------------------------------------------


def _nyud(out: Path, seed: int, n_train: int, n_val: int, image_size: tuple[int, int]) -> None:
    from .hha import CAMERAS
    from .scenes import render_room

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
            hole = _ellipse(h, w, r.uniform(0, h), r.uniform(0, w), r.uniform(2, h / 6), r.uniform(2, w / 6), 0.0)
            raw[hole] = 0
        raw[:, : int(r.integers(0, 3))] = 0
        members[f"nyud/data/images/img_{iid}.png"] = _png(scene["rgb"])
        members[f"nyud/data/depth/img_{iid}.png"] = _png(depth_mm)
        members[f"nyud/data/rawdepth/img_{iid}.png"] = _png(raw)
        members[f"nyud/segmentation/img_{iid}.mat"] = _mat({"segmentation": scene["label"].astype(np.uint8)})
    members["nyud/train.txt"] = _text(train)
    members["nyud/val.txt"] = _text(val)
    members["nyud/test.txt"] = _text(test)
    _write_tar(out / "nyud.tar.gz", members, gz=True)


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
        sem[_ellipse(s, s, rng.uniform(2, horizon * 0.6 + 2), rng.uniform(0, s), 3, 3, 0)] = 31 if k % 5 else 16
    for j in range(int(rng.integers(2, 5))):
        pick = (k + j) % 3
        if pick == 0:
            c = _SF_BIG[(k * 5 + j) % len(_SF_BIG)]
            mask = _shape(rng, s, s, "blob" if j % 2 else "rect")
        elif pick == 1:
            c = _SF_THIN[(k + j) % len(_SF_THIN)]
            mask = _shape(rng, s, s, "thin")
        else:
            c = _SF_SMALL[(k * 3 + j) % len(_SF_SMALL)]
            mask = _shape(rng, s, s, "small")
        sem[mask] = c
    if rng.random() < 0.4:  # unlabelled patches, as in the real annotations
        sem[_ellipse(s, s, rng.uniform(0, s), rng.uniform(0, s), rng.uniform(2, 6), rng.uniform(2, 6), 0)] = 0
    return sem


def _siftflow(out: Path, seed: int, n_train: int, n_val: int, size: int) -> None:
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
        members[f"Images/{d}/{iid}.jpg"] = _jpeg(rgb)
        members[f"SemanticLabels/{d}/{iid}.mat"] = _mat({"S": sem.astype(np.int16)})
        members[f"GeoLabels/{d}/{iid}.mat"] = _mat({"S": siftflow_geo(sem)})
    _write_zip(out / "SiftFlowDataset.zip", members)
    for name, lst in (("trainval", trainval), ("test", test)):
        with atomic_write(out / f"siftflow-{name}.txt", "wb") as f:
            f.write(_text(lst))


# -- PASCAL-Context on VOC2010 -----------------------------------------------------------------------------


def _context_label_table() -> tuple[list[str], dict[str, int]]:
    """A 459-entry labels.txt (ids 1..459) holding the 59 task classes under the raw list's spellings
    (table, bedclothes, cloth) at fixed scattered ids, the rest named filler classes."""
    from .data.context import CONTEXT59_CLASSES, RAW_SPELLING

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


def _context(out: Path, seed: int, n_train: int, n_val: int, image_size: tuple[int, int]) -> None:
    from .data.context import CONTEXT59_CLASSES, RAW_SPELLING

    lines, raw_ids = _context_label_table()
    rng = np.random.default_rng([seed, 4])
    taken: set[str] = set()
    train = _voc_ids(rng, n_train, (2008, 2009, 2010), taken)
    val = _voc_ids(rng, n_val, (2008, 2009, 2010), taken)
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
        h, w = _size(r, image_size)
        cls = np.zeros((h, w), np.uint8)
        split_row = int(r.uniform(0.3, 0.7) * h)
        cls[:split_row] = stuff[k % len(stuff)]
        cls[split_row:] = stuff[(k * 5 + 3) % len(stuff)]
        for j in range(int(r.integers(2, 5))):
            c = things[(k * 3 + j * 11) % len(things)]
            cls[_shape(r, h, w, str(r.choice(_SHAPES, p=_SHAPE_P)))] = c
        bg = _shape(r, h, w, "blob")  # a region of some non-task class: background in the 59 task
        cls[bg] = 0
        jpgs[iid] = _jpeg(paint(cls, app, r))
        raw = task_raw[cls]
        raw[bg] = fill_ids[k % len(fill_ids)]
        mats[iid] = _mat({"LabelMap": raw.astype(np.uint16)})
    voc: dict[str, bytes] = {f"VOCdevkit/VOC2010/JPEGImages/{i}.jpg": b for i, b in jpgs.items()}
    voc["VOCdevkit/VOC2010/ImageSets/Main/train.txt"] = _text(train)
    voc["VOCdevkit/VOC2010/ImageSets/Main/val.txt"] = _text(val)
    voc["VOCdevkit/VOC2010/ImageSets/Main/trainval.txt"] = _text(sorted(train + val))
    _write_tar(out / "VOCtrainval_03-May-2010.tar", voc)
    ctx = {f"trainval/{i}.mat": b for i, b in mats.items()}
    ctx["labels.txt"] = _text(lines)
    _write_tar(out / "trainval.tar.gz", ctx, gz=True)
    with atomic_write(out / "classes-59.txt", "wb") as f:
        f.write(_text(f"{i}: {c}" for i, c in enumerate(CONTEXT59_CLASSES)))


# -- ImageNet classifier stand-ins (torchvision key format) -----------------------------------------------


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class _Init:
    """torchvision-like init from one seeded generator: kaiming-normal (fan_out, relu) convs, zero
    biases, N(0, 0.01) linears, identity batch-norm. `fan_in=True` (the demo's files): He fan-in for
    convs and linears instead, so signals keep their size through the tiny 1/16-width nets."""

    def __init__(self, seed: int, fan_in: bool = False) -> None:
        import torch

        self.torch = torch
        self.g = torch.Generator().manual_seed(int(seed))
        self.sd: dict[str, Any] = {}
        self.fan_in = fan_in

    def conv(self, name: str, cin: int, cout: int, k: int, bias: bool = True) -> None:
        std = (2.0 / ((cin if self.fan_in else cout) * k * k)) ** 0.5
        self.sd[f"{name}.weight"] = self.torch.randn(cout, cin, k, k, generator=self.g) * std
        if bias:
            self.sd[f"{name}.bias"] = self.torch.zeros(cout)

    def linear(self, name: str, cin: int, cout: int) -> None:
        std = (2.0 / cin) ** 0.5 if self.fan_in else 0.01
        self.sd[f"{name}.weight"] = self.torch.randn(cout, cin, generator=self.g) * std
        self.sd[f"{name}.bias"] = self.torch.zeros(cout)

    def bn(self, name: str, c: int) -> None:
        t = self.torch
        self.sd.update({f"{name}.weight": t.ones(c), f"{name}.bias": t.zeros(c), f"{name}.running_mean":
                        t.zeros(c), f"{name}.running_var": t.ones(c),
                        f"{name}.num_batches_tracked": t.tensor(0, dtype=t.long)})

    def basic(self, name: str, cin: int, cout: int, k: int) -> None:
        self.conv(f"{name}.conv", cin, cout, k, bias=False)
        self.bn(f"{name}.bn", cout)


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
GOOGLENET_CFG = {  # in torchvision's order: ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj
    "inception3a": (64, 96, 128, 16, 32, 32), "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64), "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64), "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128), "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


def vgg16_state_dict(width: float, seed: int = 0, fan_in: bool = False) -> dict[str, Any]:
    """torchvision vgg16 keys (features.N, classifier.0/3/6) with channels round(c·width), min 1."""
    init, cin, idx = _Init(seed, fan_in), 3, 0
    for v in VGG16_CFG:
        if v == "M":
            idx += 1
            continue
        init.conv(f"features.{idx}", cin, _ch(int(v), width), 3)
        cin, idx = _ch(int(v), width), idx + 2  # conv + relu
    fc = _ch(4096, width)
    init.linear("classifier.0", cin * 7 * 7, fc)
    init.linear("classifier.3", fc, fc)
    init.linear("classifier.6", fc, 1000)
    return init.sd


def alexnet_caffe_blobs(width: float, seed: int = 0, fan_in: bool = False) -> dict[str, list[np.ndarray]]:
    """Caffe AlexNet blobs (conv1..conv5 with the two-group conv2/4/5, fc6..fc8 as inner products), as in
    bvlc_alexnet.caffemodel — the FCN-AlexNet of Table 1 starts from Caffe's AlexNet, whose shapes
    torchvision's AlexNet does not share."""
    from .models.vgg import scaled

    init = _Init(seed, fan_in)
    w = lambda c: scaled(c, width, multiple=2)  # noqa: E731
    convs = (("conv1", 3, w(96), 11, 1), ("conv2", w(96), w(256), 5, 2), ("conv3", w(256), w(384), 3, 1),
             ("conv4", w(384), w(384), 3, 2), ("conv5", w(384), w(256), 3, 2))
    for name, cin, cout, k, groups in convs:
        init.conv(name, cin // groups, cout, k)
    fc = scaled(4096, width)
    init.linear("fc6", w(256) * 6 * 6, fc)
    init.linear("fc7", fc, fc)
    init.linear("fc8", fc, 1000)
    names = [c[0] for c in convs] + ["fc6", "fc7", "fc8"]
    return {n: [init.sd[f"{n}.weight"].numpy(), init.sd[f"{n}.bias"].numpy()] for n in names}


def googlenet_state_dict(width: float, seed: int = 0, fan_in: bool = False) -> dict[str, Any]:
    """torchvision googlenet keys (conv1..3, inception3a..5b branches, aux1/aux2, fc), BasicConv2d = conv
    without bias + batch norm; input channels of each block = sum of the previous block's rounded outputs."""
    init = _Init(seed, fan_in)
    c64, c192 = _ch(64, width), _ch(192, width)
    init.basic("conv1", 3, c64, 7)
    init.basic("conv2", c64, c64, 1)
    init.basic("conv3", c64, c192, 3)
    cin, outs = c192, {}
    for name, (b1, b2r, b2, b3r, b3, b4) in GOOGLENET_CFG.items():
        b1, b2r, b2, b3r, b3, b4 = (_ch(x, width) for x in (b1, b2r, b2, b3r, b3, b4))
        init.basic(f"{name}.branch1", cin, b1, 1)
        init.basic(f"{name}.branch2.0", cin, b2r, 1)
        init.basic(f"{name}.branch2.1", b2r, b2, 3)
        init.basic(f"{name}.branch3.0", cin, b3r, 1)
        init.basic(f"{name}.branch3.1", b3r, b3, 3)  # torchvision uses 3×3 here, not the paper's 5×5
        init.basic(f"{name}.branch4.1", cin, b4, 1)
        cin = b1 + b2 + b3 + b4
        outs[name] = cin
    for aux, src in (("aux1", "inception4a"), ("aux2", "inception4d")):
        c128, c1024 = _ch(128, width), _ch(1024, width)
        init.basic(f"{aux}.conv", outs[src], c128, 1)
        init.linear(f"{aux}.fc1", c128 * 4 * 4, c1024)
        init.linear(f"{aux}.fc2", c1024, 1000)
    init.linear("fc", cin, 1000)
    return init.sd


PRETRAIN_CLASSES = 64  # "ImageNet" stand-in: classifies patches of the 64 class appearances
PRETRAIN_PATCH = 32      # px; one pool5 cell of VGG16


def pretrain_patches(rng: np.random.Generator, n: int, n_classes: int = PRETRAIN_CLASSES,
                     size: int = PRETRAIN_PATCH) -> tuple[np.ndarray, np.ndarray]:
    """The stand-in's "ImageNet": n RGB patches (N×size×size×3 uint8) and their class ids. Each patch
    shows an object of its class (an ellipse over the patch centre) on a region of another class, painted
    like the demo datasets (appearance ids 0..63: every colour of the grid, as the datasets use them)."""
    app = class_appearance(n_classes)
    labels = rng.integers(0, n_classes, n)
    other = rng.integers(0, n_classes, n)
    tiles = 8
    out = np.zeros((n, size, size, 3), np.uint8)
    for start in range(0, n, tiles * tiles):
        k = min(tiles * tiles, n - start)
        canvas = np.zeros((tiles * size, tiles * size), np.int64)
        for j in range(k):
            ty, tx = divmod(j, tiles)
            m = _ellipse(size, size, size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3),
                         rng.uniform(0.25, 0.6) * size, rng.uniform(0.25, 0.6) * size, rng.uniform(0, np.pi))
            tile = np.where(m, labels[start + j], other[start + j])
            canvas[ty * size:(ty + 1) * size, tx * size:(tx + 1) * size] = tile
        rgb = paint(canvas, app, rng)
        for j in range(k):
            ty, tx = divmod(j, tiles)
            out[start + j] = rgb[ty * size:(ty + 1) * size, tx * size:(tx + 1) * size]
    return out, labels


def _vgg_logits(p: dict[str, Any], x: Any) -> Any:
    """torchvision VGG16's forward on PRETRAIN_PATCH-px input (pool5 is 1×1, so the 7×7 average pool
    replicates it and fc6 sees the sum of its 7×7 weights), from a state dict of tensors."""
    import torch.nn.functional as F

    idx = 0
    for v in VGG16_CFG:
        if v == "M":
            x, idx = F.max_pool2d(x, 2), idx + 1
            continue
        x = F.relu(F.conv2d(x, p[f"features.{idx}.weight"], p[f"features.{idx}.bias"], padding=1))
        idx += 2
    x = x.flatten(1)
    w6 = p["classifier.0.weight"]
    x = F.relu(F.linear(x, w6.view(w6.shape[0], x.shape[1], -1).sum(-1), p["classifier.0.bias"]))
    x = F.relu(F.linear(x, p["classifier.3.weight"], p["classifier.3.bias"]))
    return F.linear(x, p["classifier.6.weight"], p["classifier.6.bias"])


def pretrain_vgg16(sd: dict[str, Any], steps: int, seed: int, batch: int = 32, lr: float = 1e-3,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A short "ImageNet pretraining" of the VGG16 stand-in (Adam, 1 thread, deterministic) on
    `pretrain_patches`, in torchvision's preprocessing — the FCNs then start, as in the paper, from a
    classifier whose features already tell the classes apart."""
    import torch
    import torch.nn.functional as F

    from .models.preprocessing import TORCHVISION

    if steps <= 0:
        return sd
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng([seed, 99])
        n_pool = min(steps * batch, 8192)
        imgs, labels = pretrain_patches(rng, n_pool)
        mean = torch.tensor(TORCHVISION.mean).view(1, 3, 1, 1)
        std = torch.tensor(TORCHVISION.std).view(1, 3, 1, 1)
        x_all = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        y_all = torch.from_numpy(labels)
        p = {k: v.clone().requires_grad_(True) for k, v in sd.items()}
        opt = torch.optim.Adam(list(p.values()), lr=lr)
        order = torch.randperm(n_pool, generator=torch.Generator().manual_seed(seed))
        correct = seen = 0
        for step in range(steps):
            i0 = (step * batch) % n_pool
            idx = order[i0:i0 + batch]
            logits = _vgg_logits(p, x_all[idx])
            loss = F.cross_entropy(logits, y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y_all[idx]).sum())
            seen += len(idx)
            if log and (step + 1) % 100 == 0:
                log(f"demo: vgg16 stand-in pretraining step {step + 1}: loss {loss.item():.3f}, "
                    f"train acc {correct / max(seen, 1):.2f}")
                correct = seen = 0
        return {k: v.detach().clone() for k, v in p.items()}
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)


def _weights(out: Path, seed: int, width: float, pretrain_steps: int = 0,
             log: Callable[[str], None] | None = None) -> None:
    from .io import atomic_save_torch
    from .models.caffe import write_caffemodel

    vgg = pretrain_vgg16(vgg16_state_dict(width, seed * 1000 + 11, True), pretrain_steps, seed * 1000 + 11, log=log)
    atomic_save_torch(vgg, out / "vgg16.pth")
    atomic_save_torch(googlenet_state_dict(width, seed * 1000 + 13, True), out / "googlenet.pth")
    write_caffemodel(out / "bvlc_alexnet.caffemodel", alexnet_caffe_blobs(width, seed * 1000 + 12, True),
                     net_name="AlexNet")


# -- the authors' released FCN caffemodels: stand-ins with their layer names and blob shapes ------------


def _bilinear_blob(c: int, k: int) -> np.ndarray:
    """The authors' frozen interpolation: channel i upsamples channel i with a k×k bilinear kernel."""
    from .models.fcn import bilinear_kernel

    w = np.zeros((c, c, k, k), np.float32)
    w[np.arange(c), np.arange(c)] = bilinear_kernel(k)
    return w


def _fcn_blobs(rng: np.random.Generator, kind: str, variant: str, heads: dict[str, int], width: float,
               suffix: str = "", final_suffix: bool = True) -> dict[str, list[np.ndarray]]:
    """One FCN stream as the authors' net.py names it: trunk (VGG16 conv1_1…fc7 or CaffeNet conv1…fc7),
    score_fr, and per variant upscore2/score_pool4/upscore_pool4/score_pool3 and the final
    upscore/upscore16/upscore8 (suffix `_sem`/`_geo` per SIFT Flow head, `color`/`hha` per NYUD tower)."""
    from .models.vgg import scaled

    def conv(cout: int, cin: int, k: int) -> list[np.ndarray]:
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * np.float32((2.0 / (cin * k * k)) ** 0.5)
        return [w, (0.01 * rng.standard_normal(cout)).astype(np.float32)]

    out: dict[str, list[np.ndarray]] = {}
    if kind == "alexnet":
        c = lambda n: scaled(n, width, multiple=2)  # noqa: E731
        for name, cout, cin, k in (("conv1", c(96), 3, 11), ("conv2", c(256), c(96) // 2, 5),
                                   ("conv3", c(384), c(256), 3), ("conv4", c(384), c(384) // 2, 3),
                                   ("conv5", c(256), c(384) // 2, 3)):
            out[name + suffix] = conv(cout, cin, k)
        taps, last, k6 = {}, c(256), 6
    else:
        cin, taps = 3, {}
        for b, chans in enumerate(((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)), 1):
            for i, co in enumerate(chans, 1):
                out[f"conv{b}_{i}{suffix}"] = conv(scaled(co, width), cin, 3)
                cin = scaled(co, width)
            taps[f"pool{b}"] = cin
        last, k6 = cin, 7
    f = scaled(4096, width)
    out[f"fc6{suffix}"] = conv(f, last, k6)
    out[f"fc7{suffix}"] = conv(f, f, 1)
    final = {"fcn32s": ("upscore", 63 if kind == "alexnet" else 64), "fcn16s": ("upscore16", 32),
             "fcn8s": ("upscore8", 16), "fcn8s-atonce": ("upscore8", 16)}[variant]
    for h, n in heads.items():
        hs = f"_{h}" if len(heads) > 1 else ""
        out[f"score_fr{hs}{suffix}"] = [0.1 * x for x in conv(n, f, 1)]
        if variant != "fcn32s":
            out[f"upscore2{hs}{suffix}"] = [_bilinear_blob(n, 4)]
            out[f"score_pool4{hs}{suffix}"] = conv(n, taps["pool4"], 1)
        if variant in ("fcn8s", "fcn8s-atonce"):
            out[f"upscore_pool4{hs}{suffix}"] = [_bilinear_blob(n, 4)]
            out[f"score_pool3{hs}{suffix}"] = conv(n, taps["pool3"], 1)
        if final_suffix:
            out[f"{final[0]}{hs}{suffix}"] = [_bilinear_blob(n, final[1])]
    if variant == "fcn8s-atonce":
        out["scale_pool4"] = [np.array([0.01], np.float32)]
        out["scale_pool3"] = [np.array([0.0001], np.float32)]
    return out


def released_caffe_blobs(name: str, width: float, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Layer blobs of a stand-in for one of the authors' released caffemodels (fcnlib.released.MODELS),
    at `width`: random trunk and score layers, bilinear upsamplers, the at-once net's Scale constants."""
    from .paper import NUM_CLASSES
    from .released import MODELS

    m = MODELS[name]
    rng = np.random.default_rng([seed, 4242, sorted(MODELS).index(name)])
    n = NUM_CLASSES.get(m.dataset, 0)
    heads = dict(m.heads) if m.heads else {"score": n}
    if not m.fusion:
        return _fcn_blobs(rng, m.backbone, m.variant, heads, width)
    out = {}
    for sfx in ("color", "hha"):  # two towers, scores summed 0.5/0.5, one shared upscore
        out.update(_fcn_blobs(rng, m.backbone, m.variant, heads, width, suffix=sfx, final_suffix=False))
    out["upscore"] = [_bilinear_blob(n, 64)]
    return out


def _released(out: Path, seed: int, width: float, names: Sequence[str]) -> None:
    from .models.caffe import write_caffemodel
    from .released import MODELS

    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise ConfigError(f"demo: unknown released models {unknown}; choose from {sorted(MODELS)}")
    for name in names:
        m = MODELS[name]
        write_caffemodel(out / m.caffemodel, released_caffe_blobs(name, width, seed), net_name=name)


# -- entry points ----------------------------------------------------------------------------------------


def make_demo(out_dir: PathLike, *, seed: int = 0, width: float = 0.0625, n_train: int = 48, n_val: int = 16,
              image_size: int | tuple[int, int] = (64, 96), siftflow_size: int | None = None,
              parts: Sequence[str] = ALL_PARTS, pretrain_steps: int = 1200,
              released: Sequence[str] = (), log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the demo raw files into `out_dir`; returns the manifest {relative path: {"sha256", "size"}}.

    Files: VOCtrainval_25-May-2011.tar, VOCtrainval_11-May-2012.tar, benchmark.tgz, seg11valid.txt,
    train_noval.txt (pascal); nyud.tar.gz (nyud); SiftFlowDataset.zip, siftflow-trainval.txt,
    siftflow-test.txt (siftflow); VOCtrainval_03-May-2010.tar, trainval.tar.gz, classes-59.txt (context); vgg16.pth,
    bvlc_alexnet.caffemodel, googlenet.pth (weights); stand-ins of the authors' released FCN caffemodels
    named in `released` (e.g. fcn8s-heavy-pascal.caffemodel; 32s ones are large: C×C×64×64 upsamplers);
    manifest.json (last). `n_train`/`n_val` are per-dataset
    train/val image counts (test sets get n_val), `image_size` the (min, max) side in px (or the max
    side alone), `siftflow_size` the side of the square SIFT Flow images (default: the mean of those),
    `width` the backbone channel factor.
    """
    out = Path(out_dir)
    if n_train < 2 or n_val < 1:
        raise ConfigError(f"demo: n_train must be >= 2 and n_val >= 1 (got {n_train}, {n_val})")
    if isinstance(image_size, int):  # one number = the largest side; sizes then vary over its top quarter
        image_size = (max(16, round(0.75 * image_size)), image_size)
    lo, hi = int(image_size[0]), int(image_size[1])
    siftflow_size = (lo + hi) // 2 if siftflow_size is None else int(siftflow_size)
    if lo < 16 or hi < lo:
        raise ConfigError(f"demo: image_size must be (min, max) with 16 <= min <= max, got {image_size}")
    if not 0 < width <= 1:
        raise ConfigError(f"demo: width must be in (0, 1], got {width}")
    unknown = set(parts) - set(ALL_PARTS)
    if unknown:
        raise ConfigError(f"demo: unknown parts {sorted(unknown)}; choose from {list(ALL_PARTS)}")
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda s: None)
    steps = {
        "pascal": lambda: _pascal(out, seed, n_train, n_val, (lo, hi)),
        "nyud": lambda: _nyud(out, seed, n_train, n_val, (lo, hi)),
        "siftflow": lambda: _siftflow(out, seed, n_train, n_val, int(siftflow_size)),
        "context": lambda: _context(out, seed, n_train, n_val, (lo, hi)),
        "weights": lambda: _weights(out, seed, float(width), int(pretrain_steps), log),
        "released": lambda: _released(out, seed, float(width), released),
    }
    for part in ALL_PARTS:
        if part in parts:
            t0 = time.perf_counter()
            steps[part]()
            log(f"demo: {part} written in {time.perf_counter() - t0:.1f} s")
    manifest = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_file() and rel != "manifest.json" and not p.name.startswith("."):
            manifest[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def cli(argv: Sequence[str] | None = None) -> int:
    """`fcn demo-data -o DIR [--seed N] [--width W]`: write the offline demo raw files."""
    from .cliopts import Parser, add_out

    ap = Parser(prog="fcn demo-data", description=cli.__doc__)
    add_out(ap, "output folder (e.g. data/raw)", required=True)
    ap.add_argument("--seed", type=int, default=0, help="generator seed: same seed, same bytes (default 0)")
    ap.add_argument("--width", type=float, default=0.0625, help="backbone channel factor of the stand-in weights")
    ap.add_argument("--n-train", type=int, default=48, help="training images per dataset (default 48)")
    ap.add_argument("--n-val", type=int, default=16, help="validation/test images per dataset (default 16)")
    ap.add_argument("--min-size", type=int, default=64, help="smallest image side in pixels (default 64)")
    ap.add_argument("--max-size", type=int, default=96, help="largest image side in pixels (default 96)")
    ap.add_argument("--parts", nargs="+", default=list(ALL_PARTS), choices=ALL_PARTS,
                    help="which datasets/weights to write (default: all)")
    ap.add_argument("--released", nargs="*", default=[], metavar="NAME",
                    help="released models to write stand-in caffemodels for (fcnlib.released.MODELS)")
    a = ap.parse_args(argv)
    man = make_demo(a.out, seed=a.seed, width=a.width, n_train=a.n_train, n_val=a.n_val,
                    image_size=(a.min_size, a.max_size), parts=a.parts, released=a.released, log=print)
    print(f"demo: {len(man)} files in {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
