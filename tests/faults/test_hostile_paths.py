"""Reads outside what was given (issue 23, class 7): inputs are read only inside the folders the user
named or the dataset's root — one helper, fcnlib.files.paths.inside, used by `fcn segment` (a folder's entries),
the dataset loader (every path a dataset.json names, and links inside its folders) and the split-list
readers (ids that climb out). A link leaving is refused naming the link; `fcn segment --follow-links`
reads what links lead to on purpose; a dataset keeps data elsewhere only in folders it names in "roots"."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hostile import fcn, one_error
from PIL import Image

from fcnlib.data.dataset import SegDataset, load_dataset_meta, read_ids
from fcnlib.errors import DataError
from fcnlib.files.io import write_label_png
from fcnlib.files.paths import inside
from fcnlib.models import build_fcn, save_model
from fcnlib.models.preprocessing import CAFFE_VGG


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    model = build_fcn("fcn32s", "vgg16", num_classes=3, width=0.0625)
    save_model(model, {"arch": model.arch, "modalities": ["rgb"], "preprocessing": {"rgb": CAFFE_VGG.to_dict()},
                       "classes": ["a", "b", "c"], "dataset": "toy"}, tmp_path / "w.pt")
    return tmp_path / "w.pt"


def _img(path: Path, v: int = 80) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 24, 3), v, np.uint8)).save(path)
    return path


# ---- fcn segment DIR ------------------------------------------------------------------------------------
LINKS = {
    "absolute link elsewhere": lambda d, secret: os.symlink(secret, d / "x.png"),
    "relative link climbing out": lambda d, secret: os.symlink(os.path.relpath(secret, d), d / "x.png"),
    "link to a link elsewhere": lambda d, secret: (os.symlink(secret, d.parent / "hop.png"),
                                                   os.symlink(d.parent / "hop.png", d / "x.png")),
    "link to a folder's file via a linked subfolder": lambda d, secret: os.symlink(secret, d / "y.jpg"),
}


@pytest.mark.parametrize("case", list(LINKS))
def test_segment_dir_link_leaving_refused(tmp_path: Path, weights: Path, case: str) -> None:
    secret = _img(tmp_path / "private" / "secret.png", 200)
    d = tmp_path / "photos"
    _img(d / "a.png")
    LINKS[case](d, secret)
    out = tmp_path / "out"
    err = one_error(fcn("segment", str(d), "--weights", str(weights), "-o", str(out), "--device", "cpu"))
    link = next(p for p in d.iterdir() if p.is_symlink())
    assert err.startswith(f"error: {link}: ") and "outside" in err and "--follow-links" in err, err
    assert not out.exists()
    r = fcn("segment", str(d), "--weights", str(weights), "-o", str(out), "--device", "cpu", "--follow-links")
    assert r.returncode == 0 and (out / f"{link.stem}.png").exists(), r.stderr[-2000:]


def test_segment_dir_link_inside_accepted(tmp_path: Path, weights: Path) -> None:
    d = tmp_path / "photos"
    _img(d / "sub" / "a.png")
    os.symlink("sub/a.png", d / "b.png")
    r = fcn("segment", str(d), "--weights", str(weights), "-o", str(tmp_path / "o"), "--device", "cpu")
    assert r.returncode == 0 and (tmp_path / "o" / "b.png").exists(), r.stderr[-2000:]


def test_segment_file_named_by_the_user_is_read(tmp_path: Path, weights: Path) -> None:
    """A link the user names on the command line is theirs to name (the policy is about folders)."""
    secret = _img(tmp_path / "elsewhere" / "s.png")
    os.symlink(secret, tmp_path / "named.png")
    r = fcn("segment", str(tmp_path / "named.png"), "--weights", str(weights), "-o", str(tmp_path / "o"),
            "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]


# ---- dataset.json ---------------------------------------------------------------------------------------
def _dataset(root: Path, rgb_dir: str = "rgb", labels_dir: str = "labels", ids: str = "splits/val.txt",
             extra: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for d in (root / "rgb", root / "labels"):
        d.mkdir(exist_ok=True)
    for i in ("i0", "i1"):
        _img(root / "rgb" / f"{i}.png")
        write_label_png(root / "labels" / f"{i}.png", np.zeros((24, 24), np.uint8))
    (root / "splits").mkdir(exist_ok=True)
    (root / "splits" / "val.txt").write_text("i0\ni1\n")
    meta = {"name": "toy", "source": "demo", "ignore_index": 255, "heads": {"sem": 3},
            "classes": {"sem": ["a", "b", "c"]}, **(extra or {}),
            "splits": {"val": {"ids": ids, "images": {"rgb": {"dir": rgb_dir, "ext": ".png"}},
                               "labels": {"sem": {"dir": labels_dir, "ext": ".png"}}}}}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root / "dataset.json"


def _outside(tmp_path: Path) -> Path:
    o = tmp_path / "x"
    for i in ("i0", "i1"):
        _img(o / f"{i}.png", 200)
    (o / "val.txt").write_text("i0\ni1\n")
    return o


DATASET_CASES = {
    "images dir ../x": {"rgb_dir": "../x"},
    "images dir absolute": {"rgb_dir": "{X}"},
    "labels dir ../../..": {"labels_dir": "../../../../etc"},
    "labels dir climbing via a subfolder": {"labels_dir": "labels/../../x"},
    "ids file ../x/val.txt": {"ids": "../x/val.txt"},
    "ids file absolute": {"ids": "{X}/val.txt"},
}


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_dataset_json_paths_leaving_refused(tmp_path: Path, case: str) -> None:
    x = _outside(tmp_path)
    kw = {k: v.replace("{X}", str(x)) for k, v in DATASET_CASES[case].items()}
    dj = _dataset(tmp_path / "ds", **kw)
    with pytest.raises(DataError) as ei:
        load_dataset_meta(dj)
    msg = str(ei.value)
    assert "leads outside" in msg and "dataset.json" in msg, msg


def test_dataset_dir_that_is_a_link_leaving_refused(tmp_path: Path) -> None:
    x = _outside(tmp_path)
    dj = _dataset(tmp_path / "ds", rgb_dir="rgb2")
    os.symlink(x, tmp_path / "ds" / "rgb2")
    with pytest.raises(DataError) as ei:
        load_dataset_meta(dj)
    assert str(ei.value).startswith(f"{tmp_path / 'ds' / 'rgb2'}: ") and "is a link to" in str(ei.value)


def test_dataset_file_link_leaving_refused(tmp_path: Path) -> None:
    x = _outside(tmp_path)
    dj = _dataset(tmp_path / "ds")
    (tmp_path / "ds" / "rgb" / "i1.png").unlink()
    os.symlink(x / "i1.png", tmp_path / "ds" / "rgb" / "i1.png")
    ds = SegDataset(dj, "val")
    ds[0]
    with pytest.raises(DataError) as ei:
        ds[1]
    assert str(ei.value).startswith(f"{tmp_path / 'ds' / 'rgb' / 'i1.png'}: ") and "outside" in str(ei.value)


def test_dataset_roots_allow_named_folders_only(tmp_path: Path) -> None:
    x = _outside(tmp_path)
    dj = _dataset(tmp_path / "ds", rgb_dir=str(x), extra={"roots": [str(x)]})
    assert load_dataset_meta(dj)["splits"]["val"]["images"]["rgb"]["dir"] == str(x)
    assert SegDataset(dj, "val")[0][0].shape[0] == 3
    dj = _dataset(tmp_path / "ds2", rgb_dir=str(x / ".." / "ds"), extra={"roots": [str(x)]})
    with pytest.raises(DataError, match="leads outside"):
        load_dataset_meta(dj)
    dj = _dataset(tmp_path / "ds3", extra={"roots": [3]})
    with pytest.raises(DataError, match="'roots' must list folders"):
        load_dataset_meta(dj)
    # relative to the file, as prepare_pascal names the extracted archives it reads in place
    dj = _dataset(tmp_path / "ds4", rgb_dir="../x", extra={"roots": ["../x"]})
    assert load_dataset_meta(dj)["splits"]["val"]["images"]["rgb"]["dir"] == str(x)
    dj = _dataset(tmp_path / "ds5", rgb_dir="../x/../ds", extra={"roots": ["../x"]})
    with pytest.raises(DataError, match="leads outside"):
        load_dataset_meta(dj)


def test_fcn_evaluate_dataset_leaving(tmp_path: Path, weights: Path) -> None:
    _outside(tmp_path)
    dj = _dataset(tmp_path / "ds", rgb_dir="../x")
    err = one_error(fcn("evaluate", str(weights), "--dataset", str(dj), "--split", "val", "-o",
                        str(tmp_path / "m.json"), "--device", "cpu"))
    assert "leads outside" in err and not (tmp_path / "m.json").exists()


# ---- split lists ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("line", ["../x/i0", "/etc/passwd", "a/../../b", "..", "C:/x", "a\\..\\..\\b"])
def test_list_ids_climbing_refused(tmp_path: Path, line: str) -> None:
    p = tmp_path / "val.txt"
    p.write_text(f"i0\n{line}\n")
    with pytest.raises(DataError, match="line 2"):
        read_ids(p)


# ---- the helper ------------------------------------------------------------------------------------------
def test_inside_helper(tmp_path: Path) -> None:
    (tmp_path / "r" / "a").mkdir(parents=True)
    (tmp_path / "o").mkdir()
    assert inside(tmp_path / "r", "a", "dir", "fix") == tmp_path / "r" / "a"
    assert inside(tmp_path / "r", tmp_path / "r" / "a", "dir", "fix") == tmp_path / "r" / "a"
    for bad in ("..", "../o", "a/../../o", str(tmp_path / "o")):
        with pytest.raises(DataError, match="leads outside"):
            inside(tmp_path / "r", bad, "dir", "fix")
    os.symlink(tmp_path / "o", tmp_path / "r" / "l")
    with pytest.raises(DataError) as ei:
        inside(tmp_path / "r", "l/f.png", "image", "fix it")
    assert str(ei.value).startswith(f"{tmp_path / 'r' / 'l'}: image is a link to {tmp_path / 'o'}")
