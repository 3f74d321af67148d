"""SBD .mat conversion, the paper's PASCAL splits and dataset.json (synthetic archives + the real lists)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from helpers_paths import need_shared as _need
from PIL import Image

from fcnlib.data import splits as S
from fcnlib.data.prepare.sbd import convert_sbd, find_sbd_root, read_sbd_cls
from fcnlib.data.prepare.voc import find_voc_root, prepare_pascal
from fcnlib.errors import DataError
from fcnlib.facts.datasets import VOC_CLASSES
from fcnlib.files.archive import safe_extract
from fcnlib.files.io import write_label_png

H, W = 6, 8


def save_sbd_mat(path: Path, seg: np.ndarray) -> None:
    """An SBD cls/*.mat in the real layout: struct GTcls{Segmentation, Boundaries (20×1 cell of sparse),
    CategoriesPresent}."""
    bounds = np.empty((20, 1), dtype=object)
    for k in range(20):
        bounds[k, 0] = scipy.sparse.csc_matrix((seg == k + 1).astype(np.uint8))
    cats = np.unique(seg[seg > 0]).astype(np.uint8).reshape(-1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"GTcls": {"Segmentation": seg.astype(np.uint8), "Boundaries": bounds,
                                      "CategoriesPresent": cats}})


def _seg(seed: int, void: bool = False) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 21, (H, W)).astype(np.uint8)
    if void:
        a[0, :] = 255
    return a


def _jpg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), np.uint8)).save(path)


def _voc(root: Path, train: list[str], val: list[str], test: list[str] | None = None,
         test_labels: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    labels = {}
    for k, i in enumerate(train + val + (test or [])):
        _jpg(root / "JPEGImages" / f"{i}.jpg", seed + k)
        if test is None or i not in test or test_labels:
            labels[i] = _seg(seed + 100 + k, void=True)
            write_label_png(root / "SegmentationClass" / f"{i}.png", labels[i])
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", train), ("val", val), ("test", test)):
        if ids is not None:
            (seg / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return labels


def _sbd_tgz(tmp: Path, train: list[str], val: list[str], seed: int = 500) -> tuple[Path, dict]:
    """A benchmark.tgz-like archive (benchmark_RELEASE/dataset/{cls,img,train.txt,val.txt}), extracted."""
    src = tmp / "sbd_src" / "benchmark_RELEASE" / "dataset"
    segs = {}
    for k, i in enumerate(train + val):
        segs[i] = _seg(seed + k)
        save_sbd_mat(src / "cls" / f"{i}.mat", segs[i])
        _jpg(src / "img" / f"{i}.jpg", seed + k)
    (src / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (src / "val.txt").write_text("".join(f"{i}\n" for i in val))
    arc = tmp / "benchmark.tgz"
    with tarfile.open(arc, "w:gz") as tf:
        tf.add(tmp / "sbd_src" / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    return safe_extract(arc, tmp / "extracted" / "sbd"), segs


# Synthetic ids: v1 is in SBD train AND VOC11 val (dropped from seg11valid); a1 has both a VOC12 and an
# SBD label (the VOC12 one wins in trainaug); s* exist only in SBD.
V11_TRAIN, V11_VAL = ["a1", "a2", "a3"], ["v1", "v2", "v3", "v4"]
V12_TRAIN, V12_VAL = ["a1", "a2", "a3", "b1"], ["c1", "v1", "v2", "v3", "v4"]
SBD_TRAIN, SBD_VAL = ["a1", "s1", "s2", "v1"], ["a2", "s3", "v2"]


@pytest.fixture
def pascal_raw(tmp_path: Path) -> dict:
    v11 = tmp_path / "extracted" / "voc2011" / "TrainVal" / "VOCdevkit" / "VOC2011"
    l11 = _voc(v11, V11_TRAIN, V11_VAL, seed=0)
    v12 = tmp_path / "extracted" / "voc2012" / "VOCdevkit" / "VOC2012"
    l12 = _voc(v12, V12_TRAIN, V12_VAL, test=["t1", "t2"], seed=200)
    for k, i in enumerate(["s1", "s2", "s3"]):  # VOC12 JPEGImages holds every SBD image
        _jpg(v12 / "JPEGImages" / f"{i}.jpg", 300 + k)
    sbd, segs = _sbd_tgz(tmp_path, SBD_TRAIN, SBD_VAL)
    ext = tmp_path / "extracted"
    return {"voc2011_dir": ext / "voc2011", "voc2012_dir": ext / "voc2012", "sbd_dir": sbd,
            "l11": l11, "l12": l12, "segs": segs, "v12": v12}


def _png(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        assert im.mode == "P"
        return np.asarray(im)


def test_sbd_mat_read_back_like_the_real_ones(tmp_path: Path) -> None:
    seg = _seg(3)
    save_sbd_mat(tmp_path / "x.mat", seg)
    raw = scipy.io.loadmat(tmp_path / "x.mat")["GTcls"][0]["Segmentation"][0]  # the torchvision/FCN idiom
    assert raw.dtype == np.uint8 and np.array_equal(raw, seg)
    assert np.array_equal(read_sbd_cls(tmp_path / "x.mat"), seg)
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataError, match="bad.mat"):
        read_sbd_cls(tmp_path / "bad.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"GTinst": {"Segmentation": seg}})
    with pytest.raises(DataError, match="not an SBD GTcls"):
        read_sbd_cls(tmp_path / "other.mat")


def test_prepare_pascal_synthetic(pascal_raw: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "pascal"
    ref = tmp_path / "seg11valid.txt"
    ref.write_text("v4\nv2\nv3\n")  # the authors' list (order does not matter)
    meta = prepare_pascal(out, voc2011_dir=pascal_raw["voc2011_dir"], sbd_dir=pascal_raw["sbd_dir"],
                          voc2012_dir=pascal_raw["voc2012_dir"], seg11valid_list=ref, source="demo",
                          workers=2, progress=False)
    assert json.loads((out / "dataset.json").read_text()) == meta
    assert meta["name"] == "pascal" and meta["heads"] == {"sem": 21}
    assert meta["classes"]["sem"] == list(VOC_CLASSES) and len(VOC_CLASSES) == 21
    got = {n: S.read_id_list(out / sp["ids"]) for n, sp in meta["splits"].items()}
    assert got == {"train": SBD_TRAIN, "seg11valid": ["v2", "v3", "v4"], "voc11train": V11_TRAIN,
                   "trainaug": ["a1", "a2", "a3", "b1", "s1", "s2", "s3"], "val12": V12_VAL,
                   "test12": ["t1", "t2"]}
    printed = capsys.readouterr().out
    assert "seg11valid" in printed and "trainaug" in printed
    # Every path resolves relative to dataset.json's folder and every id has its files.
    for n, sp in meta["splits"].items():
        img = out / sp["images"]["rgb"]["dir"]
        lbl = out / sp["labels"]["sem"]["dir"]
        for i in got[n]:
            assert (img / f"{i}.jpg").is_file() and (lbl / f"{i}.png").is_file()
    # SBD .mat → palette PNG, exact values; trainaug prefers VOC12's own label over SBD's.
    for i, seg in pascal_raw["segs"].items():
        assert np.array_equal(_png(out / "sbd_cls" / f"{i}.png"), seg)
    ta = out / meta["splits"]["trainaug"]["labels"]["sem"]["dir"]
    assert np.array_equal(_png(ta / "a1.png"), pascal_raw["l12"]["a1"])
    assert not np.array_equal(pascal_raw["l12"]["a1"], pascal_raw["segs"]["a1"])
    assert np.array_equal(_png(ta / "s3.png"), pascal_raw["segs"]["s3"])
    assert meta["splits"]["train"]["images"]["rgb"]["dir"].endswith("benchmark_RELEASE/dataset/img")
    # The contract's loader accepts it.
    from fcnlib.data import load_dataset_meta
    assert set(load_dataset_meta(out / "dataset.json")["splits"]) == set(got)


def test_rerun_rebuilds_the_whole_folder(pascal_raw: dict, tmp_path: Path) -> None:
    """A rerun converts every label again (nothing counts as done by existing) into a folder swapped in
    whole: a file of the old run (here a label the SBD archive no longer has) does not survive."""
    out = tmp_path / "pascal"
    kw = dict(voc2011_dir=pascal_raw["voc2011_dir"], sbd_dir=pascal_raw["sbd_dir"], source="demo",
              workers=1, progress=False)
    prepare_pascal(out, **kw)
    write_label_png(out / "sbd_cls" / "s1.png", np.zeros((H, W), np.uint8))  # as an older archive had it
    write_label_png(out / "sbd_cls" / "gone.png", np.zeros((H, W), np.uint8))
    meta = prepare_pascal(out, **kw)
    assert np.array_equal(_png(out / "sbd_cls" / "s1.png"), pascal_raw["segs"]["s1"])
    assert not (out / "sbd_cls" / "gone.png").exists()
    assert "trainaug" not in meta["splits"] and "test11" not in meta["splits"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_seg11valid_reference_mismatch(pascal_raw: dict, tmp_path: Path) -> None:
    ref = tmp_path / "seg11valid.txt"
    ref.write_text("v1\nv2\nv3\nv4\n")  # forgets to remove the SBD train image v1
    with pytest.raises(DataError, match=r"seg11valid.*differs.*1 only in the list \(e\.g\. v1\)"):
        prepare_pascal(tmp_path / "out", voc2011_dir=pascal_raw["voc2011_dir"],
                       sbd_dir=pascal_raw["sbd_dir"], seg11valid_list=ref, progress=False)
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_missing_image_names_id_and_file(pascal_raw: dict, tmp_path: Path) -> None:
    (pascal_raw["v12"] / "JPEGImages" / "s2.jpg").unlink()
    with pytest.raises(DataError) as ei:
        prepare_pascal(tmp_path / "out", voc2011_dir=pascal_raw["voc2011_dir"], sbd_dir=pascal_raw["sbd_dir"],
                       voc2012_dir=pascal_raw["voc2012_dir"], workers=1, progress=False)
    msg = str(ei.value)
    assert "s2" in msg and str(pascal_raw["v12"] / "JPEGImages" / "s2.jpg") in msg and "'trainaug'" in msg
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_overlap_detected_before_work(pascal_raw: dict, tmp_path: Path) -> None:
    seg = find_voc_root(pascal_raw["voc2011_dir"], 2011) / "ImageSets" / "Segmentation"
    (seg / "train.txt").write_text("a1\nv3\n")  # v3 also in seg11valid
    with pytest.raises(DataError, match="'voc11train' and 'seg11valid' share 1 image.*v3"):
        prepare_pascal(tmp_path / "out", voc2011_dir=pascal_raw["voc2011_dir"],
                       sbd_dir=pascal_raw["sbd_dir"], progress=False)
    assert not (tmp_path / "out" / "sbd_cls").exists()


def test_unlabelled_test_list_skipped(tmp_path: Path) -> None:
    v11 = tmp_path / "voc11" / "VOC2011"
    _voc(v11, ["a1"], ["v1"], test=["t1"], test_labels=False)
    sbd, _ = _sbd_tgz(tmp_path, ["a1"], ["s1"])
    meta = prepare_pascal(tmp_path / "out", voc2011_dir=tmp_path / "voc11", sbd_dir=sbd, workers=1,
                          progress=False)
    assert "test11" not in meta["splits"]
    with pytest.raises(DataError, match="no SBD dataset folder"):
        find_sbd_root(tmp_path)
    with pytest.raises(DataError, match="no VOC2012 folder"):
        find_voc_root(tmp_path, 2012)


def test_convert_sbd_missing_mat(tmp_path: Path) -> None:
    sbd, _ = _sbd_tgz(tmp_path, ["a1"], [])
    with pytest.raises(DataError, match="SBD cls folder not found"):
        convert_sbd(sbd, tmp_path / "png", ["a1"], workers=1, progress=False)
    with pytest.raises(DataError, match=r"cls/zz\.mat: SBD label for id zz is missing"):
        convert_sbd(find_sbd_root(sbd), tmp_path / "png", ["a1", "zz"], workers=1, progress=False)


# ---- the pure split logic on the real lists ------------------------------------------------------------

def test_real_voc12_lists_and_trainaug() -> None:
    d = _need("voc2012_lists_semseg")
    train, val = S.read_id_list(d / "ids_train.txt"), S.read_id_list(d / "ids_val.txt")
    aug = S.read_id_list(d / "train_aug.txt")  # 'JPEGImages/<id>.jpg SegmentationClassAug/<id>.png' lines
    assert (len(train), len(val), len(aug)) == (1464, S.REAL_SIZES["val12"], S.REAL_SIZES["trainaug"])
    assert len(val) == 1449 and len(aug) == 10582
    assert S.read_id_list(d / "val.txt") == val
    S.check_disjoint("trainaug", aug, "val12", val)
    # The published trainaug is a fixed point of our rule: it holds all of VOC12 train and no val image,
    # so (VOC12 train ∪ trainaug) − val gives it back exactly.
    assert S.trainaug(train, aug, [], val) == sorted(aug)
    assert set(train) <= set(aug)
    # Adding any val id as an "SBD" id cannot leak it into trainaug.
    assert S.trainaug(train, aug, val[:50], val) == sorted(aug)
    trainval_aug = S.read_id_list(d / "trainval_aug.txt")
    assert sorted(set(trainval_aug) - set(aug)) == sorted(val)  # 12,031 = 10,582 + 1,449
    with pytest.raises(DataError, match="'trainaug' and 'val12' share 1449"):
        S.check_disjoint("trainaug", trainval_aug, "val12", val)


def test_real_seg11valid_list() -> None:
    seg11 = S.read_id_list(_need("fcn_berkeleyvision/data/pascal/seg11valid.txt"))
    val12 = S.read_id_list(_need("voc2012_lists_semseg/ids_val.txt"))
    aug = S.read_id_list(_need("voc2012_lists_semseg/train_aug.txt"))
    assert len(seg11) == S.REAL_SIZES["seg11valid"] == 736 and len(set(seg11)) == 736
    assert set(seg11) <= set(val12)  # VOC2011 val ⊂ VOC2012 val
    # seg11valid is disjoint from every SBD train image; trainaug (which contains SBD train) must thus
    # hold none of seg11valid's images either.
    S.check_disjoint("trainaug", aug, "seg11valid", seg11)
    # Our rule reproduces the list from a superset: removing "SBD train" = val12 − seg11valid from
    # val12 gives back exactly the authors' 736, and check_same accepts it / rejects a one-off.
    derived = S.seg11valid(val12, S.minus(val12, seg11))
    S.check_same(derived, seg11, "seg11valid", "seg11valid.txt")
    with pytest.raises(DataError, match="735 ids"):
        S.check_same(derived[1:], seg11, "seg11valid", "seg11valid.txt")


def test_real_voc2012_mini_with_synthetic_sbd(tmp_path: Path) -> None:
    """The real VOCdevkit/VOC2012 layout (5 real pairs) as voc2012_dir, read in place (never copied)."""
    mini = _need("voc2012_mini")
    v11 = tmp_path / "voc11" / "TrainVal" / "VOCdevkit" / "VOC2011"
    _voc(v11, ["2007_000063"], ["2007_000129", "2011_000003"])
    sbd, segs = _sbd_tgz(tmp_path, ["2007_000063", "2011_000003"], ["2011_000006", "2007_000129"])
    meta = prepare_pascal(tmp_path / "out", voc2011_dir=tmp_path / "voc11", sbd_dir=sbd, voc2012_dir=mini,
                          workers=1, progress=False)
    out = tmp_path / "out"
    ids = {n: S.read_id_list(out / sp["ids"]) for n, sp in meta["splits"].items()}
    assert ids["val12"] == ["2007_000129"] and ids["seg11valid"] == ["2007_000129"]
    assert ids["trainaug"] == ["2007_000063", "2011_000003", "2011_000006", "2011_000025"]
    real_lbl = mini / "VOCdevkit" / "VOC2012" / "SegmentationClass"
    ta = out / meta["splits"]["trainaug"]["labels"]["sem"]["dir"]
    for i in ids["trainaug"]:  # all four have a real VOC12 label, which wins over the synthetic SBD one
        assert np.array_equal(_png(ta / f"{i}.png"), _png(real_lbl / f"{i}.png"))
    assert (out / meta["splits"]["val12"]["images"]["rgb"]["dir"]).resolve() == \
        (mini / "VOCdevkit" / "VOC2012" / "JPEGImages").resolve()
    assert set(np.unique(_png(real_lbl / "2007_000129.png")).tolist()) == {0, 2, 15, 255}


def test_cli_with_train_noval(pascal_raw: dict, tmp_path: Path) -> None:
    from fcnlib.cli.prepare_pascal import cli

    tn = tmp_path / "train_noval.txt"
    tn.write_text("a1\ns1\ns2\ns3\n")
    out = tmp_path / "out"
    assert cli(["-o", str(out), "--voc2011", str(pascal_raw["voc2011_dir"]), "--sbd", str(pascal_raw["sbd_dir"]),
                "--voc2012", str(pascal_raw["voc2012_dir"]), "--train-noval", str(tn), "--source", "demo",
                "--workers", "1"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert S.read_id_list(out / meta["splits"]["train_noval"]["ids"]) == ["a1", "s1", "s2", "s3"]
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    tn.write_text("a1\nv2\n")  # v2 is a VOC12 val image
    with pytest.raises(DataError, match="'train_noval' and 'val12' share 1 image"):
        cli(["-o", str(out), "--voc2011", str(pascal_raw["voc2011_dir"]), "--sbd", str(pascal_raw["sbd_dir"]),
             "--voc2012", str(pascal_raw["voc2012_dir"]), "--train-noval", str(tn)])
    # the failed rerun leaves the previous set whole (no half-new mix); the workflow deletes dataset.json first
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
