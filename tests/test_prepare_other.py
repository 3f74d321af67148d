"""prepare_nyud / prepare_siftflow / prepare_context: real FCN lists + demo raw archives → SegDataset."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_paths import SHARED_DATA
from PIL import Image
from scipy.io import loadmat, savemat

from fcnlib.data import SegDataset, read_ids
from fcnlib.data.prepare.context import (
    context_lut,
    parse_label_list,
    prepare_context,
    read_classes59,
)
from fcnlib.data.prepare.nyud import prepare_nyud
from fcnlib.data.prepare.siftflow import SUBDIR, prepare_siftflow
from fcnlib.demo import make_demo
from fcnlib.errors import DataError
from fcnlib.facts.datasets import CONTEXT59_CLASSES, NYU40_CLASSES, REGISTRY, SIFTFLOW_SEM_CLASSES, split_list_sources
from fcnlib.pipeline.config import load_yaml

FCN = SHARED_DATA / "fcn_berkeleyvision" / "data"


def _need(p: Path) -> Path:
    if not p.exists():
        pytest.skip(f"real FCN list not found at {p}")
    return p


# -- the real FCN lists ------------------------------------------------------------------------------


def test_real_nyud_lists_and_classes():
    d = _need(FCN / "nyud")
    tr, va, te = (read_ids(d / f"{s}.txt") for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (381, 414, 654)  # train.txt has no trailing newline
    assert len(set(tr) | set(va)) == 795 and not (set(tr) | set(va)) & set(te)
    names = (d / "classes.txt").read_text().splitlines()[:40]
    assert list(NYU40_CLASSES) == names


def test_real_siftflow_lists_and_classes():
    d = _need(FCN / "sift-flow")
    tv, te = read_ids(d / "trainval.txt"), read_ids(d / "test.txt")
    assert (len(tv), len(te)) == (2486, 200) and not set(tv) & set(te)
    listed = [ln.split(" ", 1)[1] for ln in (d / "classes.txt").read_text().splitlines()
              if ln[:2].isdigit() and ln[2:3] == " "]
    assert listed[:33] == list(SIFTFLOW_SEM_CLASSES) and listed[33:] == ["sky", "horizontal", "vertical"]


def test_real_context_59_list_maps_into_the_full_label_list():
    d = _need(FCN / "pascal-context")
    names = read_classes59(d / "classes-59.txt")
    assert names == list(CONTEXT59_CLASSES) and len(names) == 60
    lut = context_lut(names, d / "classes-400.txt")  # the raw labels.txt, 459 entries
    raw = parse_label_list(d / "classes-400.txt")
    assert len(raw) == 459 and int((lut > 0).sum()) == 59
    by_name = {v: k for k, v in raw.items()}
    assert lut[by_name["table"]] == names.index("diningtable") == 11
    assert lut[by_name["bedclothes"]] == 52 and lut[by_name["cloth"]] == 28 and lut[by_name["wood"]] == 59
    assert lut[by_name["accordion"]] == 0  # not in the task: background


# -- demo raw → prepare → SegDataset --------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("fcnlib.demo.scenes")
    demo = tmp_path_factory.mktemp("demo")
    make_demo(demo, n_train=6, n_val=3, image_size=(40, 56), siftflow_size=40, parts=("nyud", "siftflow", "context"))
    ext = tmp_path_factory.mktemp("extracted")
    for name in ("nyud.tar.gz", "VOCtrainval_03-May-2010.tar", "trainval.tar.gz"):
        with tarfile.open(demo / name) as tf:
            tf.extractall(ext / name.split(".")[0], filter="data")
    with zipfile.ZipFile(demo / "SiftFlowDataset.zip") as zf:
        zf.extractall(ext / "siftflow")
    return {"demo": demo, "ext": ext}


def test_prepare_nyud(raw, tmp_path):
    out = tmp_path / "nyud"
    meta = prepare_nyud(out, raw["ext"] / "nyud", workers=1)
    assert meta["sizes"] == {"train": 3, "val": 3, "trainval": 6, "test": 3}
    assert set(meta["splits"]["test"]["images"]) == {"rgb", "depth", "rawdepth", "hha"}
    ds = SegDataset(out / "dataset.json", "trainval", modalities=("rgb", "depth"))
    assert len(ds) == 6 and ds.num_classes == {"sem": 40} and ds.classes["sem"][0] == "wall"
    root = raw["ext"] / "nyud" / "nyud"
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape[0] == 4 and x.shape[1:] == y.shape == (42, 56)
        seg = loadmat(root / "segmentation" / f"img_{ds.ids[i]}.mat")["segmentation"].astype(np.int64)
        assert torch.equal(y, torch.from_numpy(np.where(seg == 0, 255, seg - 1)))  # label−1, void → 255
        depth = np.asarray(Image.open(root / "data" / "depth" / f"img_{ds.ids[i]}.png"), np.float32)
        np.testing.assert_array_equal(x[3].numpy(), depth)  # mm
    from fcnlib.data.hha import CAMERAS, Camera

    assert Camera(**meta["camera"]) == CAMERAS["nyu-color-gupta-crop"].scaled(56 / 560)  # as rendered
    with pytest.raises(DataError, match=r"hha"):  # declared, made later by the HHA rule
        SegDataset(out / "dataset.json", "test", modalities=("hha",))[0]
    # rerun: the same bytes (every file rebuilt, none kept by existing: tests/faults/test_stale_outputs.py)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    prepare_nyud(out, raw["ext"] / "nyud", workers=1)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_prepare_nyud_rejects_bad_label_and_foreign_lists(raw, tmp_path):
    bad = tmp_path / "raw"
    import shutil

    shutil.copytree(raw["ext"] / "nyud", bad)
    root = bad / "nyud"
    iid = read_ids(root / "train.txt")[0]
    seg = loadmat(root / "segmentation" / f"img_{iid}.mat")["segmentation"]
    seg[0, 0] = 41
    savemat(root / "segmentation" / f"img_{iid}.mat", {"segmentation": seg})
    with pytest.raises(DataError, match=rf"img_{iid}\.mat.*outside 0\.\.40"):
        prepare_nyud(tmp_path / "o1", bad, workers=1)
    if (FCN / "nyud").is_dir():  # the real lists name ids this demo does not have
        with pytest.raises(DataError, match=r"img_\d+\.png.*missing"):
            prepare_nyud(tmp_path / "o2", raw["ext"] / "nyud", lists_dir=FCN / "nyud", workers=1)
    assert not (tmp_path / "o1" / "dataset.json").exists()


def test_prepare_siftflow(raw, tmp_path):
    out = tmp_path / "sift"
    meta = prepare_siftflow(out, raw["ext"] / "siftflow", workers=2,
                            lists={s: raw["demo"] / f"siftflow-{s}.txt" for s in ("trainval", "test")})
    assert meta["sizes"] == {"trainval": 6, "test": 3} and len(meta["unlisted"]) == 2
    ds = SegDataset(out / "dataset.json", "trainval")
    assert ds.num_classes == {"sem": 33, "geo": 3}
    src = raw["ext"] / "siftflow"
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 40, 40) and set(y) == {"sem", "geo"}
        s = loadmat(src / "SemanticLabels" / SUBDIR / f"{ds.ids[i]}.mat")["S"].astype(np.int64)
        g = loadmat(src / "GeoLabels" / SUBDIR / f"{ds.ids[i]}.mat")["S"].astype(np.int64)
        assert torch.equal(y["sem"], torch.from_numpy(np.where(s == 0, 255, s - 1)))
        assert torch.equal(y["geo"], torch.from_numpy(np.where(g <= 0, 255, g - 1)))
    # the unannotated images are converted, all void: they load but give no pixels
    for iid in meta["unlisted"]:
        lab = np.asarray(Image.open(out / "labels_sem" / f"{iid}.png"))
        assert (lab == 255).all()
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "trainval.txt").write_text("coast_nowhere1\n")
    (tmp_path / "lists" / "test.txt").write_text("")
    with pytest.raises(DataError, match=r"\['test'\] not given.*add the sources siftflow_test to"):
        prepare_siftflow(tmp_path / "o", raw["ext"] / "siftflow", lists={"trainval": tmp_path / "x.txt"})
    with pytest.raises(DataError, match=r"coast_nowhere1\.jpg"):
        prepare_siftflow(tmp_path / "o", raw["ext"] / "siftflow", lists_dir=tmp_path / "lists", workers=1)


def test_split_list_sources_follow_the_source_names():
    """The rules pass a dataset's list files by source name `<dataset>_<split>`, whatever the file is called:
    the paper config downloads every list, and a source of another name is not taken for a list."""
    root = Path(__file__).resolve().parents[1]
    sources = load_yaml(root / "config" / "config.yaml")["sources"]
    for dataset, spec in REGISTRY.items():
        assert list(split_list_sources(dataset, sources)) == list(spec.split_lists)
    assert split_list_sources("nyud", {"nyud_test": {}, "nyud": {}, "nyud-val": {}}) == {"test": "nyud_test"}
    assert split_list_sources("siftflow", load_yaml(root / "config" / "demo.yaml")["sources"]) == {
        "trainval": "siftflow_trainval", "test": "siftflow_test"}


def test_prepare_context(raw, tmp_path):
    out = tmp_path / "ctx"
    meta = prepare_context(out, raw["ext"] / "VOCtrainval_03-May-2010", raw["ext"] / "trainval",
                           raw["demo"] / "classes-59.txt", source="demo", workers=1)
    assert meta["sizes"] == {"train": 6, "val": 3} and meta["heads"] == {"sem": 60}
    lut = context_lut(list(CONTEXT59_CLASSES), raw["ext"] / "trainval" / "labels.txt")
    seen = set()
    for split in ("train", "val"):
        ds = SegDataset(out / "dataset.json", split)
        for i in range(len(ds)):
            x, y = ds[i]
            lm = loadmat(raw["ext"] / "trainval" / "trainval" / f"{ds.ids[i]}.mat")["LabelMap"]
            assert x.shape[1:] == y.shape and torch.equal(y, torch.from_numpy(lut[lm].astype(np.int64)))
            seen |= set(torch.unique(y).tolist())
    assert 0 in seen and max(seen) <= 59 and len(seen) > 5
    bad = tmp_path / "labels.txt"
    bad.write_text("1: aeroplane\n2: bicycle\n")
    with pytest.raises(DataError, match="not in the full label list"):
        context_lut(list(CONTEXT59_CLASSES), bad)
    with pytest.raises(DataError, match="classes-59"):
        read_classes59(bad)


def _header_only_png(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w×h and that holds no pixel data: what a hostile or truncated file looks like
    to anything that reads only the header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = zlib.compress(b"\x00" * (1 + 3 * min(w, 64)))  # one short row: far too little for w×h
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", row) + chunk(b"IEND", b""))
    return path


def test_image_size_reads_the_header_under_the_pixel_cap(tmp_path):
    from fcnlib.files.io import DEFAULT_MAX_PIXELS, PixelLimitError, image_size

    assert image_size(_header_only_png(tmp_path / "ok.png", 56, 40)) == (56, 40)
    with pytest.raises(PixelLimitError, match=rf"bomb\.png: image has 400000000 pixels, over the limit of "
                                              rf"{DEFAULT_MAX_PIXELS}"):
        image_size(_header_only_png(tmp_path / "bomb.png", 20000, 20000))
    w = int(DEFAULT_MAX_PIXELS ** 0.5) + 10  # over the cap, under PIL's own 2× refusal
    with pytest.raises(PixelLimitError, match=rf"big\.png: image is {w}×{w} = {w * w} pixels, over the limit"):
        image_size(_header_only_png(tmp_path / "big.png", w, w))
    with pytest.raises(DataError, match=r"gone\.jpg: image is missing; re-extract it"):
        image_size(tmp_path / "gone.jpg", fix="re-extract it")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"junk\.jpg: cannot read depth \(.*\); fix this"):
        image_size(tmp_path / "junk.jpg", "depth", "fix this")


def test_prepare_nyud_refuses_a_bomb_image_naming_it(raw, tmp_path):
    import shutil

    bad = tmp_path / "raw"
    shutil.copytree(raw["ext"] / "nyud", bad)
    root = bad / "nyud"
    iid = read_ids(root / "train.txt")[0]
    iid = iid[4:] if iid.startswith("img_") else iid
    _header_only_png(root / "data" / "images" / f"img_{iid}.png", 20000, 20000)
    with pytest.raises(DataError, match=rf"img_{iid}\.png: image of id {iid} has 400000000 pixels, over the limit"):
        prepare_nyud(tmp_path / "out", bad, workers=1)
    assert not (tmp_path / "out" / "dataset.json").exists()
