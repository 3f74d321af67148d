"""SegDataset / collate_pad / transforms on real VOC pairs and synthetic on-disk fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_paths import SHARED_DATA
from PIL import Image

from fcnlib.data import SegDataset, collate_pad, load_dataset_meta
from fcnlib.data.transforms import augment_pair, translate
from fcnlib.errors import DataError
from fcnlib.files.io import write_label_png, write_png

VOC_MINI = SHARED_DATA / "voc2012_mini" / "VOCdevkit" / "VOC2012"


def _voc_json(tmp_path: Path) -> Path:
    if not VOC_MINI.is_dir():
        pytest.skip(f"real VOC sample data not found at {VOC_MINI}")
    voc = VOC_MINI.resolve()
    sets = voc / "ImageSets" / "Segmentation"
    split = {"images": {"rgb": {"dir": str(voc / "JPEGImages"), "ext": ".jpg"}},
             "labels": {"sem": {"dir": str(voc / "SegmentationClass"), "ext": ".png"}}}
    meta = {"name": "pascal", "source": "real", "ignore_index": 255, "heads": {"sem": 21},
            "classes": {"sem": [f"c{i}" for i in range(21)]}, "roots": [str(VOC_MINI.resolve())],
            "splits": {s: {"ids": str(sets / f"{s}.txt"), **split} for s in ("train", "val", "seg11valid")}}
    p = tmp_path / "dataset.json"
    p.write_text(json.dumps(meta))
    return p


def test_real_voc_pairs_load_with_documented_counts(tmp_path):
    ds = SegDataset(_voc_json(tmp_path), "val")
    assert ds.ids == ["2007_000129"] and ds.num_classes == {"sem": 21}
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 500, 334)  # 334 wide, 500 tall
    assert y.dtype == torch.int64 and y.shape == (500, 334)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 255.0 and float(x.max()) > 200
    # counts documented in shared/data/fcn_berkeleyvision/NOTES.txt for this very label
    vals, counts = torch.unique(y, return_counts=True)
    assert dict(zip(vals.tolist(), counts.tolist(), strict=True)) == {0: 54389, 2: 34183, 15: 61143, 255: 17285}
    assert ds.image_path(0).name == "2007_000129.jpg"

    train = SegDataset(_voc_json(tmp_path), "train")
    assert len(train) == 4
    for i in range(len(train)):
        x, y = train[i]
        assert x.shape[1:] == y.shape
        u = set(torch.unique(y).tolist())
        assert u <= set(range(21)) | {255} and len(u - {255}) >= 2


def test_real_voc_with_caffe_preprocessing(tmp_path):
    pre = pytest.importorskip("fcnlib.models.preprocessing")
    ds = SegDataset(_voc_json(tmp_path), "val", preprocessing={"rgb": pre.CAFFE_VGG})
    x, _ = ds[0]
    rgb = np.asarray(Image.open(VOC_MINI / "JPEGImages" / "2007_000129.jpg").convert("RGB"), np.float32)
    np.testing.assert_allclose(x[0].numpy(), rgb[..., 2] - 104.00699, atol=1e-4)  # B first
    np.testing.assert_allclose(x[2].numpy(), rgb[..., 0] - 122.67892, atol=1e-4)
    # a weights file's meta carries the plain dict: same result
    x2, _ = SegDataset(_voc_json(tmp_path), "val", preprocessing={"rgb": pre.CAFFE_VGG.to_dict()})[0]
    assert torch.equal(x, x2)


# -- synthetic fixtures (real formats: JPEG/PNG images, palette label PNGs, uint16 depth) ---------------


def _make(tmp_path: Path, n: int = 3, heads: dict[str, int] | None = None, sizes=None) -> Path:
    heads = heads or {"sem": 5}
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    ids = [f"im{i}" for i in range(n)]
    sizes = sizes or [(20 + 3 * i, 31 - 2 * i) for i in range(n)]
    for iid, (h, w) in zip(ids, sizes, strict=True):
        write_png(root / "rgb" / f"{iid}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        write_png(root / "depth" / f"{iid}.png", rng.integers(500, 5000, (h, w)).astype(np.uint16))
        for head, k in heads.items():
            lab = rng.integers(0, k, (h, w)).astype(np.uint8)
            lab[0, 0] = 255
            write_label_png(root / f"lab_{head}" / f"{iid}.png", lab)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits" / "train.txt").write_text("\n".join(ids) + "\n")
    meta = {"name": "toy", "source": "demo", "ignore_index": 255, "heads": heads,
            "classes": {h: [f"{h}{i}" for i in range(k)] for h, k in heads.items()},
            "splits": {"train": {"ids": "splits/train.txt",
                                 "images": {"rgb": {"dir": "rgb", "ext": ".png"},
                                            "depth": {"dir": "depth", "ext": ".png", "scale_m": 0.001}},
                                 "labels": {h: {"dir": f"lab_{h}", "ext": ".png"} for h in heads}}}}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root / "dataset.json"


def test_meta_resolves_relative_paths(tmp_path):
    meta = load_dataset_meta(_make(tmp_path))
    assert Path(meta["splits"]["train"]["images"]["rgb"]["dir"]) == (tmp_path / "ds" / "rgb").resolve()


def test_modalities_concatenate_and_depth_is_mm(tmp_path):
    p = _make(tmp_path)
    ds = SegDataset(p, "train", modalities=("rgb", "depth"))
    x, y = ds[1]
    assert x.shape == (4, 23, 29) and y.shape == (23, 29)
    raw = np.asarray(Image.open(tmp_path / "ds" / "depth" / "im1.png")).astype(np.float32)
    np.testing.assert_allclose(x[3].numpy(), raw, rtol=1e-6)  # 0.001 m × 1000 = mm
    pre = pytest.importorskip("fcnlib.models.preprocessing")
    ds2 = SegDataset(p, "train", modalities=("depth",), preprocessing={"depth": pre.DEPTH_LOG})
    np.testing.assert_allclose(ds2[1][0][0].numpy(), np.log(raw) - 7.844, atol=1e-4)


def test_multi_head_labels_and_collate(tmp_path):
    ds = SegDataset(_make(tmp_path, heads={"sem": 33, "geo": 3}), "train")
    assert ds.num_classes == {"sem": 33, "geo": 3}
    x, y = ds[0]
    assert isinstance(y, dict) and set(y) == {"sem", "geo"} and int(y["geo"][y["geo"] != 255].max()) <= 2
    xb, yb = collate_pad([ds[i] for i in range(3)])
    assert xb.shape == (3, 3, 26, 31) and yb["sem"].shape == (3, 26, 31)
    # item 0 is 20×31: rows 20.. are padding
    assert float(xb[0, :, 20:].abs().sum()) == 0.0 and bool((yb["geo"][0, 20:] == 255).all())


def test_collate_pad_pads_with_zero_and_255():
    a = (torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64))
    b = (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.int64))
    x, y = collate_pad([a, b])
    assert x.shape == (2, 3, 6, 5) and y.shape == (2, 6, 5)
    assert float(x[0, :, 4:].sum()) == 0 and float(x[1, :, :, 3:].sum()) == 0
    assert bool((y[0, 4:] == 255).all()) and bool((y[1, :, 3:] == 255).all()) and int(y[0, 0, 0]) == 0


def test_augment_is_deterministic_per_seed_epoch_index(tmp_path):
    p = _make(tmp_path)
    aug = {"mirror": True, "jitter": 4, "seed": 3}
    a, b = SegDataset(p, "train", augment=aug), SegDataset(p, "train", augment=aug)
    plain = SegDataset(p, "train")
    outs = []
    for e in range(6):
        a.set_epoch(e)
        b.set_epoch(e)
        xa, ya = a[2]
        xb, yb = b[2]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        outs.append(ya)
        assert xa.shape == plain[2][0].shape  # same size after jitter
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_mirror_and_translate_semantics():
    img = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    lab = torch.arange(12).reshape(3, 4)
    assert torch.equal(translate(lab, 1, 0, 255)[:, 0], torch.full((3,), 255))
    assert torch.equal(translate(lab, 1, 0, 255)[:, 1:], lab[:, :3])
    assert torch.equal(translate(img, 0, -1, 0.0)[0, :2], img[0, 1:])
    flips = set()
    for s in range(20):
        xi, yl = augment_pair(img, lab, np.random.default_rng(s), mirror=True)
        flips.add(bool(torch.equal(yl, lab.flip(-1))))
        assert torch.equal(xi[0], yl.float())  # image and label transformed identically
    assert flips == {True, False}


# -- bad inputs -> DataError naming the file ----------------------------------------------------------


def test_missing_id_names_id_and_path(tmp_path):
    p = _make(tmp_path)
    (tmp_path / "ds" / "splits" / "train.txt").write_text("im0\nghost\n")
    ds = SegDataset(p, "train")
    with pytest.raises(DataError, match=r"ghost\.png.*'ghost'"):
        ds[1]


def test_truncated_jpeg(tmp_path):
    p = _make(tmp_path)
    jpg = tmp_path / "ds" / "rgb" / "im0.jpg"
    Image.fromarray(np.full((20, 31, 3), 120, np.uint8)).save(jpg, quality=90)
    jpg.write_bytes(jpg.read_bytes()[:200])
    meta = json.loads(p.read_text())
    meta["splits"]["train"]["images"]["rgb"]["ext"] = ".jpg"
    p.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="im0.jpg"):
        SegDataset(p, "train")[0]


def test_label_out_of_range_and_size_mismatch(tmp_path):
    p = _make(tmp_path)
    bad = np.zeros((20, 31), np.uint8)
    bad[3, 3] = 7  # 5 classes
    write_label_png(tmp_path / "ds" / "lab_sem" / "im0.png", bad)
    write_label_png(tmp_path / "ds" / "lab_sem" / "im1.png", np.zeros((10, 10), np.uint8))
    ds = SegDataset(p, "train")
    with pytest.raises(DataError, match=r"im0\.png.*\[7\]"):
        ds[0]
    with pytest.raises(DataError, match=r"im1\.png.*differs"):
        ds[1]


def test_modality_size_mismatch_and_bad_split(tmp_path):
    p = _make(tmp_path)
    write_png(tmp_path / "ds" / "depth" / "im0.png", np.ones((5, 5), np.uint16))
    with pytest.raises(DataError, match=r"im0\.png"):
        SegDataset(p, "train", modalities=("rgb", "depth"))[0]
    with pytest.raises(DataError, match="no split 'val'"):
        SegDataset(p, "val")
    with pytest.raises(DataError, match="no 'hha' images"):
        SegDataset(p, "train", modalities=("hha",))
    p.write_text("{not json")
    with pytest.raises(DataError, match="dataset.json"):
        SegDataset(p, "train")
