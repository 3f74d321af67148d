"""make_demo: deterministic bytes, real archive layouts, real .mat conventions, split relationships."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat

from fcnlib.cli.demo_data import cli
from fcnlib.demo import make_demo

SMALL = {"n_train": 6, "n_val": 3, "image_size": (40, 56), "siftflow_size": 40, "pretrain_steps": 3}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    make_demo(out, seed=0, **SMALL)
    return out


def _tar(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tf:
        return {m.name: m for m in tf.getmembers()}


def _tar_read(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tf:
        f = tf.extractfile(name)
        assert f is not None
        return f.read()


def _lines(b: bytes) -> list[str]:
    return b.decode().split()


def test_same_seed_same_bytes_other_seed_differs(demo, tmp_path):
    m1 = json.loads((demo / "manifest.json").read_text())
    m2 = make_demo(tmp_path / "again", seed=0, **SMALL)
    assert m1 == m2
    assert (demo / "manifest.json").read_bytes() == (tmp_path / "again" / "manifest.json").read_bytes()
    expected = {"VOCtrainval_25-May-2011.tar", "VOCtrainval_11-May-2012.tar", "benchmark.tgz", "seg11valid.txt",
                "train_noval.txt", "nyud.tar.gz", "SiftFlowDataset.zip", "siftflow-trainval.txt",
                "siftflow-test.txt", "VOCtrainval_03-May-2010.tar", "trainval.tar.gz", "classes-59.txt",
                "vgg16.pth", "bvlc_alexnet.caffemodel", "googlenet.pth"}
    assert set(m1) == expected
    for name, entry in m1.items():
        data = (demo / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    m3 = make_demo(tmp_path / "seed1", seed=1, parts=("pascal",), **SMALL)
    assert m3["benchmark.tgz"]["sha256"] != m1["benchmark.tgz"]["sha256"]


def test_voc_archives_layout_and_split_relationships(demo):
    v11, v12 = demo / "VOCtrainval_25-May-2011.tar", demo / "VOCtrainval_11-May-2012.tar"
    m11, m12 = _tar(v11), _tar(v12)
    r11, r12 = "TrainVal/VOCdevkit/VOC2011", "VOCdevkit/VOC2012"
    assert m11[f"{r11}/JPEGImages"].isdir() and all(n.startswith(("TrainVal", r11)) for n in m11)
    seg = {(y, s): set(_lines(_tar_read(v, f"{r}/ImageSets/Segmentation/{s}.txt")))
           for y, v, r in ((11, v11, r11), (12, v12, r12)) for s in ("train", "val", "trainval")}
    assert seg[11, "train"] <= seg[12, "train"] and seg[11, "val"] <= seg[12, "val"]
    # demo-only labelled test sets (VOC2012 test ⊇ VOC2011 test), disjoint from trainval
    t11 = set(_lines(_tar_read(v11, f"{r11}/ImageSets/Segmentation/test.txt")))
    t12 = set(_lines(_tar_read(v12, f"{r12}/ImageSets/Segmentation/test.txt")))
    assert t11 < t12 and not t12 & seg[12, "trainval"] and len(t11) == SMALL["n_val"]
    assert all(f"{r11}/SegmentationClass/{i}.png" in m11 for i in t11)
    assert not seg[12, "train"] & seg[12, "val"] and seg[12, "trainval"] == seg[12, "train"] | seg[12, "val"]
    for i in seg[12, "trainval"]:
        assert f"{r12}/JPEGImages/{i}.jpg" in m12 and f"{r12}/SegmentationClass/{i}.png" in m12
    lab = Image.open(io.BytesIO(_tar_read(v12, f"{r12}/SegmentationClass/{sorted(seg[12, 'val'])[0]}.png")))
    assert lab.mode == "P" and tuple(lab.getpalette()[3:6]) == (128, 0, 0)  # VOC palette, class 1
    # the void band: 255 present in labels, like the real ones
    assert any(255 in np.asarray(Image.open(io.BytesIO(_tar_read(v12, f"{r12}/SegmentationClass/{i}.png"))))
               for i in seg[12, "val"])

    sbd = _tar(demo / "benchmark.tgz")
    sbd_train = set(_lines(_tar_read(demo / "benchmark.tgz", "benchmark_RELEASE/dataset/train.txt")))
    sbd_val = set(_lines(_tar_read(demo / "benchmark.tgz", "benchmark_RELEASE/dataset/val.txt")))
    assert all(f"benchmark_RELEASE/dataset/{d}/{i}.{e}" in sbd for i in sbd_train | sbd_val
               for d, e in (("cls", "mat"), ("img", "jpg")))
    seg11valid = set(_lines((demo / "seg11valid.txt").read_bytes()))
    assert sbd_train & seg[11, "val"], "SBD train must overlap VOC2011 val, as in the real data"
    assert seg11valid == seg[11, "val"] - sbd_train and seg11valid < seg[11, "val"]
    noval = set(_lines((demo / "train_noval.txt").read_bytes()))
    assert noval == (sbd_train | sbd_val) - seg[12, "val"] and noval
    assert len(sbd_train) == SMALL["n_train"] and len(seg11valid) == SMALL["n_val"]


def test_sbd_mat_reads_like_the_real_one(demo, tmp_path):
    names = [n for n in _tar(demo / "benchmark.tgz") if n.endswith(".mat")]
    path = tmp_path / "x.mat"
    path.write_bytes(_tar_read(demo / "benchmark.tgz", names[0]))
    seg = loadmat(path)["GTcls"][0]["Segmentation"][0]
    assert seg.dtype == np.uint8 and seg.ndim == 2 and seg.max() <= 20 and 255 not in seg
    gt = loadmat(path)["GTcls"][0][0]
    assert gt["Boundaries"].shape == (20, 1)
    assert set(gt["CategoriesPresent"].ravel().tolist()) == set(np.unique(seg[seg > 0]).tolist())
    img = Image.open(io.BytesIO(_tar_read(demo / "benchmark.tgz", names[0].replace("cls", "img")[:-3] + "jpg")))
    assert img.size == (seg.shape[1], seg.shape[0]) and img.format == "JPEG"


def test_nyud_layout(demo, tmp_path):
    pytest.importorskip("fcnlib.demo.scenes")
    names = _tar(demo / "nyud.tar.gz")
    lists = {s: _lines(_tar_read(demo / "nyud.tar.gz", f"nyud/{s}.txt")) for s in ("train", "val", "test")}
    assert len(lists["train"]) + len(lists["val"]) == SMALL["n_train"] and len(lists["test"]) == SMALL["n_val"]
    iid = lists["test"][0]
    assert 5001 <= int(iid) <= 6449
    for d in ("data/images", "data/depth", "data/rawdepth"):
        assert f"nyud/{d}/img_{iid}.png" in names
    depth = np.asarray(Image.open(io.BytesIO(_tar_read(demo / "nyud.tar.gz", f"nyud/data/depth/img_{iid}.png"))))
    assert depth.dtype == np.uint16 and 300 < np.median(depth) < 10000  # millimetres of a room
    (tmp_path / "s.mat").write_bytes(_tar_read(demo / "nyud.tar.gz", f"nyud/segmentation/img_{iid}.mat"))
    seg = loadmat(tmp_path / "s.mat")["segmentation"]
    assert seg.shape == depth.shape and seg.max() <= 40 and len(np.unique(seg)) >= 3


def test_siftflow_zip_layout(demo, tmp_path):
    d = "spatial_envelope_256x256_static_8outdoorcategories"
    with zipfile.ZipFile(demo / "SiftFlowDataset.zip") as zf:
        names = set(zf.namelist())
        tv = (demo / "siftflow-trainval.txt").read_text().split()
        test = (demo / "siftflow-test.txt").read_text().split()
        assert len(tv) == SMALL["n_train"] and len(test) == SMALL["n_val"] and not set(tv) & set(test)
        for i in tv + test:
            assert {f"Images/{d}/{i}.jpg", f"SemanticLabels/{d}/{i}.mat", f"GeoLabels/{d}/{i}.mat"} <= names
        (tmp_path / "s.mat").write_bytes(zf.read(f"SemanticLabels/{d}/{tv[0]}.mat"))
        (tmp_path / "g.mat").write_bytes(zf.read(f"GeoLabels/{d}/{tv[0]}.mat"))
        n_images = sum(n.startswith("Images/") and n.endswith(".jpg") for n in names)
    s, g = loadmat(tmp_path / "s.mat")["S"], loadmat(tmp_path / "g.mat")["S"]
    assert s.shape == g.shape == (40, 40) and 0 <= s.min() and s.max() <= 33
    assert set(np.unique(g).tolist()) <= {-1, 1, 2, 3} and ((s == 0) == (g == -1)).all()
    assert n_images == len(tv) + len(test) + 2  # two unannotated images in no list, like the real zip


def test_context_layout(demo, tmp_path):
    from fcnlib.data.prepare.context import parse_label_list

    v10 = _tar(demo / "VOCtrainval_03-May-2010.tar")
    train = _lines(_tar_read(demo / "VOCtrainval_03-May-2010.tar", "VOCdevkit/VOC2010/ImageSets/Main/train.txt"))
    assert f"VOCdevkit/VOC2010/JPEGImages/{train[0]}.jpg" in v10
    ctx = _tar(demo / "trainval.tar.gz")
    assert f"trainval/{train[0]}.mat" in ctx and "labels.txt" in ctx
    (tmp_path / "labels.txt").write_bytes(_tar_read(demo / "trainval.tar.gz", "labels.txt"))
    table = parse_label_list(tmp_path / "labels.txt")
    assert sorted(table) == list(range(1, 460)) and {"table", "bedclothes", "cloth"} <= set(table.values())
    (tmp_path / "l.mat").write_bytes(_tar_read(demo / "trainval.tar.gz", f"trainval/{train[0]}.mat"))
    lm = loadmat(tmp_path / "l.mat")["LabelMap"]
    assert lm.ndim == 2 and lm.min() >= 1 and lm.max() <= 459
    c59 = (demo / "classes-59.txt").read_text().splitlines()
    assert len(c59) == 60 and c59[0] == "0: background" and c59[59] == "59: wood"


def test_weights_in_torchvision_format(demo):
    sd = torch.load(demo / "vgg16.pth", weights_only=True)
    convs = [k for k in sd if k.startswith("features.") and k.endswith(".weight")]
    assert [int(k.split(".")[1]) for k in convs] == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert sd["features.0.weight"].shape == (4, 3, 3, 3) and sd["features.28.weight"].shape == (32, 32, 3, 3)
    assert sd["classifier.0.weight"].shape == (256, 32 * 7 * 7) and sd["classifier.6.weight"].shape == (1000, 256)
    # He fan-in init, then a few steps of the stand-in's "ImageNet" pretraining (biases move off zero)
    assert 0.0 < float(sd["features.0.bias"].abs().max()) < 0.1
    std = float(sd["classifier.0.weight"].std())
    assert abs(std - (2 / (32 * 49)) ** 0.5) < 0.01
    conv_std = float(sd["features.28.weight"].std())
    assert abs(conv_std - (2 / (32 * 9)) ** 0.5) < 0.01

    from fcnlib.models.caffe import read_caffemodel

    ax = read_caffemodel(demo / "bvlc_alexnet.caffemodel")  # Caffe AlexNet: grouped conv2/4/5
    assert ax["conv1"][0].shape == (6, 3, 11, 11) and ax["conv2"][0].shape == (16, 3, 5, 5)
    assert ax["fc6"][0].shape == (256, 16 * 36) and ax["fc8"][0].shape == (1000, 256)
    gn = torch.load(demo / "googlenet.pth", weights_only=True)
    assert gn["conv1.conv.weight"].shape == (4, 3, 7, 7) and "conv1.conv.bias" not in gn
    assert gn["inception3a.branch3.1.conv.weight"].shape[-1] == 3  # torchvision's 3×3 "5×5" branch
    c3b = sum(gn[f"inception3a.{b}.conv.weight"].shape[0] for b in ("branch1", "branch2.1", "branch3.1",
                                                                    "branch4.1"))
    assert gn["inception3b.branch1.conv.weight"].shape[1] == c3b
    assert gn["fc.weight"].shape == (1000, 64) and "aux2.fc2.weight" in gn


def test_int_image_size_as_the_test_config_passes_it(tmp_path):
    make_demo(tmp_path, n_train=2, n_val=1, image_size=48, parts=("siftflow",))
    with zipfile.ZipFile(tmp_path / "SiftFlowDataset.zip") as zf:
        jpg = next(n for n in zf.namelist() if n.endswith(".jpg"))
        assert Image.open(io.BytesIO(zf.read(jpg))).size == (42, 42)  # (36 + 48) // 2


@pytest.mark.slow  # > 10 s: multi-process, a real Snakemake or a full demo part
def test_cli_writes_requested_parts(tmp_path):
    assert cli(["-o", str(tmp_path / "w"), "--parts", "weights", "--width", "0.125"]) == 0
    man = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert set(man) == {"vgg16.pth", "bvlc_alexnet.caffemodel", "googlenet.pth"}
    assert torch.load(tmp_path / "w" / "vgg16.pth", weights_only=True)["features.0.weight"].shape[0] == 8


def test_class_colours_are_far_apart_and_away_from_the_background():
    """Every dataset's classes must differ clearly by colour (farthest-point palette), and none may
    look like VOC's grey-brown background."""
    from fcnlib.demo import BACKGROUND_RGB, class_appearance

    for n, salt in ((21, 0), (34, 3), (60, 7)):
        colours = class_appearance(n, salt)[0].astype(float)
        d = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
        assert d[~np.eye(n, dtype=bool)].min() >= 69.9, (n, salt)
    voc = class_appearance(21)[0][1:].astype(float)
    assert np.linalg.norm(voc - np.array(BACKGROUND_RGB), axis=1).min() >= 70
