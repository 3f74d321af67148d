"""Every number a file provides is validated where it is read (issue 23, class 6): weights meta
preprocessing (finite, numeric, one per channel, std > 0) and in-channels vs modalities; labels integral
and in range (SBD .mat, 32-bit label images); camera intrinsics; split ids unique; EXIF orientation and
16-bit images in `fcn segment`; output names that would collide; every Scale value of a caffemodel; and
the authors' preprocessing arithmetic (float64 subtract, one rounding), bit for bit on real VOC images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import fcn, one_error
from PIL import Image

from fcnlib.errors import ConfigError, DataError, WeightsError
from fcnlib.models import build_fcn, load_model, save_model
from fcnlib.models.preprocessing import CAFFE_VGG, TORCHVISION, Preprocessing

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
VOC_JPEGS = sorted((SHARED / "voc2012_mini" / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg"))[:6]
DEMO_JPEG = SHARED / "fcn_berkeleyvision" / "demo" / "image.jpg"


# ---- the authors' arithmetic ---------------------------------------------------------------------------
def authors_voc_input(path: Path, mean: tuple[float, ...]) -> np.ndarray:
    """What the authors' VOC data layer computes (re-implemented from its description: float32 pixels,
    RGB→BGR, in-place subtraction of a float64 mean array, CHW)."""
    in_ = np.array(Image.open(path), dtype=np.float32)
    in_ = in_[:, :, ::-1]
    in_ -= np.array(mean)  # float64 array: numpy computes in float64, rounds once into the float32 array
    return in_.transpose((2, 0, 1))


def test_voc_preprocessing_bit_identical_to_authors() -> None:
    paths = [p for p in [*VOC_JPEGS, DEMO_JPEG] if p.is_file()]
    if not paths:
        pytest.skip("../shared/data VOC sample images are not present")
    worst = 0.0
    for path in paths:
        img = np.asarray(Image.open(path).convert("RGB"))
        ours = CAFFE_VGG.apply(img).numpy()
        theirs = authors_voc_input(path, CAFFE_VGG.mean)
        assert ours.dtype == np.float32 and ours.tobytes() == np.ascontiguousarray(theirs).tobytes(), path
        # the apply_tensor path (the trainer's, on the device) is the same bits
        t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        assert CAFFE_VGG.apply_tensor(t).numpy().tobytes() == ours.tobytes()
        # rounding the mean to float32 first (the old arithmetic) moves a value by at most one float32 ulp
        # at the operands' scale (the means are in [64, 128)), and does move some: the change is only that
        old = (img.astype(np.float32).transpose(2, 0, 1)[::-1]
               - np.asarray(CAFFE_VGG.mean, np.float32)[:, None, None])
        ulp = np.spacing(np.maximum(np.abs(ours), np.float32(64)))
        assert (np.abs(old - ours) <= ulp).all(), path
        worst = max(worst, float(np.abs(old - ours).max()))
    assert worst > 0


def test_std_path_one_rounding() -> None:
    img = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(4, 5, 3)
    want = ((img.astype(np.float64) / 255.0 - np.array(TORCHVISION.mean)) / np.array(TORCHVISION.std))
    got = TORCHVISION.apply(img).numpy()
    assert got.tobytes() == np.ascontiguousarray(want.transpose(2, 0, 1).astype(np.float32)).tobytes()


# ---- weights meta: preprocessing and channels -----------------------------------------------------------
BAD_PRE = {
    "nan mean": {"mean": [float("nan"), 1.0, 2.0]},
    "inf mean": {"mean": [1.0, float("inf"), 2.0]},
    "string means": {"mean": ["104", "116", "122"]},
    "bool mean": {"mean": [True, 1.0, 2.0]},
    "mean too short": {"mean": [104.0, 116.0]},
    "mean too long": {"mean": [1.0, 2.0, 3.0, 4.0]},
    "empty mean": {"mean": []},
    "mean is a string": {"mean": "104 116 122"},
    "zero std": {"std": [0.2, 0.0, 0.2]},
    "negative std": {"std": [0.2, -0.1, 0.2]},
    "nan std": {"std": [0.2, float("nan"), 0.2]},
    "std wrong length": {"std": [0.2, 0.2]},
    "nan scale": {"scale": float("nan")},
    "inf scale": {"scale": float("inf")},
    "string scale": {"scale": "255"},
    "zero scale": {"scale": 0.0},
}


def _weights(path: Path, pre: dict | None = None, modalities: list[str] | None = None,
             in_channels: int = 3) -> Path:
    model = build_fcn("fcn32s", "vgg16", num_classes=21, width=0.0625, in_channels=in_channels)
    rgb = dict(CAFFE_VGG.to_dict(), **(pre or {}))
    meta = {"arch": model.arch, "modalities": modalities or ["rgb"], "classes": [f"c{i}" for i in range(21)],
            "preprocessing": {m: rgb for m in (modalities or ["rgb"])}}
    save_model(model, meta, path)
    return path


@pytest.mark.parametrize("case", list(BAD_PRE))
def test_bad_preprocessing_in_weights_refused_on_load(tmp_path: Path, case: str) -> None:
    w = _weights(tmp_path / "w.pt", BAD_PRE[case])
    with pytest.raises(WeightsError) as ei:
        load_model(w)
    msg = str(ei.value)
    assert msg.startswith(f"{w}: meta['preprocessing']['rgb']"), msg


@pytest.mark.parametrize("case", ["nan mean", "string means", "zero std"])
def test_bad_preprocessing_through_segment(tmp_path: Path, case: str) -> None:
    w = _weights(tmp_path / "w.pt", BAD_PRE[case])
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    err = one_error(fcn("segment", str(img), "--weights", str(w), "-o", str(tmp_path / "out"), "--device", "cpu"))
    assert str(w) in err and "preprocessing" in err
    assert not (tmp_path / "out").exists()


def test_preprocessing_direct_construction_refuses_non_finite() -> None:
    for bad in ([float("nan")] * 3, ["1", "2", "3"]):
        with pytest.raises(ConfigError):
            Preprocessing.from_dict({"channel_order": "BGR", "scale": 255.0, "mean": bad})


@pytest.mark.parametrize("mods,in_ch", [(["rgb"], 4), (["rgb", "depth"], 3), (["hha"], 1), (["rgb", "hha"], 3)])
def test_in_channels_contradicting_modalities(tmp_path: Path, mods: list[str], in_ch: int) -> None:
    pre = {"depth": {"mean": [7.8], "transform": "log"}}
    model = build_fcn("fcn32s", "vgg16", num_classes=21, width=0.0625, in_channels=in_ch)
    meta = {"arch": model.arch, "modalities": mods, "classes": [f"c{i}" for i in range(21)],
            "preprocessing": {m: dict(CAFFE_VGG.to_dict(), **pre.get(m, {})) for m in mods}}
    w = tmp_path / "w.pt"
    save_model(model, meta, w)
    with pytest.raises(WeightsError) as ei:
        load_model(w)
    assert str(ei.value).startswith(f"{w}: ") and ("input channels" in str(ei.value) or "channel" in str(ei.value))


def test_consistent_meta_still_loads(tmp_path: Path) -> None:
    w = _weights(tmp_path / "w.pt")
    _, meta = load_model(w)
    assert meta.preprocessing(w)["rgb"] == CAFFE_VGG
