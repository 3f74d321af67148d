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


# ---- labels ----------------------------------------------------------------------------------------------
SBD_BAD = {
    "float 19.9": (np.float64, 19.9, "non-integral"),
    "NaN": (np.float64, np.nan, "non-integral"),
    "inf": (np.float32, np.inf, "non-integral"),
    "negative": (np.int16, -3, "outside 0..20"),
    "21": (np.uint8, 21, "outside 0..20"),
    "int32 big": (np.int32, 2**20, "outside 0..20"),
}


@pytest.mark.parametrize("case", list(SBD_BAD))
def test_sbd_label_values_refused_naming_file_and_value(tmp_path: Path, case: str) -> None:
    import scipy.io

    from fcnlib.data.prepare.sbd import read_sbd_cls

    dtype, value, word = SBD_BAD[case]
    seg = np.zeros((6, 7), dtype)
    seg[2, 3] = value
    mat = tmp_path / "2008_000002.mat"
    scipy.io.savemat(mat, {"GTcls": {"Segmentation": seg}})
    with pytest.raises(DataError) as ei:
        read_sbd_cls(mat)
    msg = str(ei.value)
    assert msg.startswith(f"{mat}: ") and word in msg, msg
    shown = "nan" if np.isnan(value) else "inf" if np.isinf(value) else str(value)
    assert shown in msg, msg


def test_sbd_integral_floats_accepted(tmp_path: Path) -> None:
    import scipy.io

    from fcnlib.data.prepare.sbd import read_sbd_cls

    seg = np.arange(42, dtype=np.float64).reshape(6, 7) % 21
    scipy.io.savemat(tmp_path / "a.mat", {"GTcls": {"Segmentation": seg}})
    assert read_sbd_cls(tmp_path / "a.mat").tolist() == seg.astype(np.uint8).tolist()


@pytest.mark.parametrize("value", [-1, -255, -256 + 3, -(2**31)])
def test_negative_32bit_label_not_wrapped(tmp_path: Path, value: int) -> None:
    from fcnlib.files.io import read_label

    arr = np.zeros((5, 5), np.int32)
    arr[1, 1] = value
    p = tmp_path / "l.tif"  # a 32-bit signed label image (TIFF mode I)
    Image.fromarray(arr, mode="I").save(p)
    with pytest.raises(DataError) as ei:
        read_label(p, 21)
    assert str(ei.value).startswith(f"{p}: label values [{value}]")


def test_siftflow_float_label_refused(tmp_path: Path) -> None:
    import scipy.io

    from fcnlib.data.prepare.siftflow import _load_S

    s = np.ones((4, 4)) * 2.5
    scipy.io.savemat(tmp_path / "s.mat", {"S": s})
    with pytest.raises(DataError, match="non-integral value"):
        _load_S(tmp_path / "s.mat", "x", "semantic", 0, 33)


# ---- camera intrinsics -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [{"fx": float("nan")}, {"fy": float("inf")}, {"cx": float("-inf")}, {"fx": 0.0},
                                 {"fy": -500.0}, {"cy": 0}, {"fx": "518"}, {"cx": True}])
def test_camera_intrinsics_refused(bad: dict) -> None:
    from fcnlib.data.hha import CAMERAS, Camera

    good = dict(vars(CAMERAS["nyu-color"]))
    with pytest.raises(ConfigError) as ei:
        Camera(**{**good, **bad})
    assert "must be a finite number > 0" in str(ei.value) and next(iter(bad)) in str(ei.value)
    with pytest.raises(DataError) as ei:
        Camera.from_dict({**good, **bad}, "data/nyud/dataset.json")
    assert str(ei.value).startswith("data/nyud/dataset.json: camera intrinsics")


@pytest.mark.parametrize("text", ["nan,519,325,253", "518,inf,325,253", "518,519,-1,253", "0,519,325,253"])
def test_fcn_hha_intrinsics_flag(tmp_path: Path, text: str) -> None:
    d = tmp_path / "d.png"
    Image.fromarray(np.full((20, 20), 2000, np.uint16)).save(d)
    err = one_error(fcn("hha", str(d), "-o", str(tmp_path / "o"), "--intrinsics", text, "--workers", "1"))
    assert f"--intrinsics {text!r}" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("scale", ["nan", "inf", "0", "-0.001"])
def test_fcn_hha_depth_scale_flag(tmp_path: Path, scale: str) -> None:
    d = tmp_path / "d.png"
    Image.fromarray(np.full((20, 20), 2000, np.uint16)).save(d)
    err = one_error(fcn("hha", str(d), "-o", str(tmp_path / "o"), "--depth-scale", scale, "--workers", "1"))
    assert "depth scale" in err


# ---- split ids -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,dup", [("a\nb\na\n", "a"), ("x\n\n  x  \n", "x"),
                                      ("2008_1\n2008_2\n2008_2\n", "2008_2")])
def test_dataset_split_ids_unique(tmp_path: Path, text: str, dup: str) -> None:
    from fcnlib.data.dataset import read_ids

    p = tmp_path / "val.txt"
    p.write_text(text)
    with pytest.raises(DataError) as ei:
        read_ids(p)
    assert str(ei.value).startswith(f"{p}: id {dup!r} is listed twice")


@pytest.mark.parametrize("text", ["2007_000032\nJPEGImages/2007_000032.jpg\n", "a b\nc\na\n"])
def test_voc_list_ids_unique(tmp_path: Path, text: str) -> None:
    from fcnlib.data.splits import read_id_list

    p = tmp_path / "train.txt"
    p.write_text(text)
    with pytest.raises(DataError, match="listed twice"):
        read_id_list(p)


# ---- images: 16-bit, EXIF, segment outputs ---------------------------------------------------------------
def test_16bit_grey_scaled_not_clipped(tmp_path: Path) -> None:
    from fcnlib.files.io import read_image

    ramp = (np.arange(64, dtype=np.uint32) * 1024).astype(np.uint16).reshape(8, 8)  # 64 grey levels
    p = tmp_path / "g16.png"
    Image.fromarray(ramp).save(p)
    got = read_image(p)
    assert got.dtype == np.uint8 and got.shape == (8, 8, 3)
    assert len(np.unique(got[..., 0])) == 64
    assert (got[..., 0] == (ramp >> 8)).all()


def test_float_image_refused(tmp_path: Path) -> None:
    from fcnlib.files.io import read_image

    p = tmp_path / "f.tif"
    Image.fromarray(np.full((4, 4), 0.5, np.float32), mode="F").save(p)
    with pytest.raises(DataError, match="floating-point image"):
        read_image(p)


def _exif_rotated_jpeg(path: Path, orientation: int) -> np.ndarray:
    """A 30×20 (w×h) photo stored unrotated with an EXIF orientation tag; returns the stored pixels."""
    arr = np.zeros((20, 30, 3), np.uint8)
    arr[:5, :10] = 255
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes(), quality=95)
    return arr


@pytest.mark.parametrize("orientation,shape", [(6, (30, 20)), (8, (30, 20)), (3, (20, 30)), (1, (20, 30))])
def test_exif_orientation_applied_for_segment_only(tmp_path: Path, orientation: int, shape: tuple) -> None:
    from fcnlib.files.io import read_image

    p = tmp_path / "photo.jpg"
    _exif_rotated_jpeg(p, orientation)
    assert read_image(p).shape[:2] == (20, 30)  # datasets: as stored (labels are drawn on stored pixels)
    assert read_image(p, orient=True).shape[:2] == shape  # what a viewer shows
    w = _weights(tmp_path / "w.pt")
    r = fcn("segment", str(p), "--weights", str(w), "-o", str(tmp_path / "o"), "--device", "cpu")
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.asarray(Image.open(tmp_path / "o" / "photo.png")).shape == shape


@pytest.mark.parametrize("names,overlay", [(("d1/a.jpg", "d2/a.jpg"), False), (("d1/a.png", "d2/a.png"), False),
                                           (("d1/a.png", "d1/a_overlay.png"), True)])
def test_segment_colliding_outputs_refused(tmp_path: Path, names: tuple[str, str], overlay: bool) -> None:
    w = _weights(tmp_path / "w.pt")
    for n in names:
        (tmp_path / n).parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((24, 24, 3), 80, np.uint8)).save(tmp_path / n)
    dirs = sorted({str((tmp_path / n).parent) for n in names})
    args = ["segment", *dirs, "--weights", str(w), "-o", str(tmp_path / "o"), "--device", "cpu"]
    err = one_error(fcn(*args, *(["--overlay"] if overlay else [])))
    assert all(str(tmp_path / n) in err for n in names), err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_segment_same_file_twice_written_once(tmp_path: Path) -> None:
    w = _weights(tmp_path / "w.pt")
    (tmp_path / "d").mkdir()
    Image.fromarray(np.full((24, 24, 3), 80, np.uint8)).save(tmp_path / "d" / "a.png")
    r = fcn("segment", str(tmp_path / "d"), str(tmp_path / "d" / "a.png"), "--weights", str(w), "-o",
            str(tmp_path / "o"), "--device", "cpu")
    assert r.returncode == 0 and "wrote 1 label map" in r.stdout, (r.stdout, r.stderr[-2000:])


# ---- the at-once caffemodel's fixed Scale layers: every value checked -------------------------------------
@pytest.mark.parametrize("layer,blobs,word", [
    ("scale_pool4", [np.array([0.01] * 7 + [0.02], np.float32)], "channel 7"),
    ("scale_pool4", [np.array([0.01, np.nan, 0.01], np.float32)], "channel 1"),
    ("scale_pool3", [np.array([0.0001] * 3 + [0.001] * 5, np.float32)], "5 of 8 values differ"),
    ("scale_pool3", [np.array([], np.float32)], "nothing"),
    ("scale_pool4", [np.array([0.01] * 4, np.float32), np.array([0, 0, 0.5, 0], np.float32)], "non-zero bias"),
])
def test_atonce_scale_checked_in_full(tmp_path: Path, layer: str, blobs: list, word: str) -> None:
    from fcnlib.demo import released_caffe_blobs
    from fcnlib.eval import released
    from fcnlib.models.caffe import write_caffemodel

    W = 0.0625
    atonce = released_caffe_blobs("voc-fcn8s-atonce", W)
    atonce[layer] = blobs
    write_caffemodel(tmp_path / "d.caffemodel", atonce)
    with pytest.raises(WeightsError) as ei:
        released.convert(tmp_path / "d.caffemodel", tmp_path / "d.pt", "voc-fcn8s-atonce", width=W)
    assert str(ei.value).startswith(f"{tmp_path / 'd.caffemodel'}: layer {layer}") and word in str(ei.value)
    assert not (tmp_path / "d.pt").exists()


def test_atonce_per_channel_constant_accepted(tmp_path: Path) -> None:
    from fcnlib.demo import released_caffe_blobs
    from fcnlib.eval import released
    from fcnlib.models.caffe import write_caffemodel

    W = 0.0625
    atonce = released_caffe_blobs("voc-fcn8s-atonce", W)
    atonce["scale_pool4"] = [np.full(32, 0.01, np.float32)]  # one per channel, as Caffe's Scale stores it
    atonce["scale_pool3"] = [np.full(16, 0.0001, np.float32), np.zeros(16, np.float32)]
    write_caffemodel(tmp_path / "d.caffemodel", atonce)
    released.convert(tmp_path / "d.caffemodel", tmp_path / "d.pt", "voc-fcn8s-atonce", width=W)
    assert (tmp_path / "d.pt").exists()
