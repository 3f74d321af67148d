"""Hostile and broken files: huge-pixel images, depth maps and labels, decompression bombs,
crafted weights (DEFLATE storages, absurd num_classes, NaN tensors), bad split ids, degenerate depth,
a caffemodel that is a folder, a full disk under a checkpoint. Each is refused fast with one
`error: <file>: <problem>; <fix>` line (through `fcn segment` / `fcn hha` where they are the way in) and
nothing is written at the destination. Fast: no Snakemake."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import big_png, fcn, files_under, one_error
from PIL import Image

from fcnlib.errors import DataError, DiskError, WeightsError
from fcnlib.files.io import DEFAULT_MAX_PIXELS, read_depth_png, read_image, read_label
from fcnlib.models import build_fcn, load_model, save_model
from fcnlib.models.preprocessing import CAFFE_VGG


@pytest.fixture(scope="module")
def huge(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("huge")
    return {"png": big_png(d / "huge.png", 13000, 13000),
            "depth": big_png(d / "huge_depth.png", 12000, 12000, bit_depth=16),
            "bomb": big_png(d / "bomb.png", 20000, 20000)}  # > 2×40 MP: PIL's own DecompressionBombError


def _tiny_weights(path: Path, nan: str | None = None, arch_edit: dict | None = None) -> Path:
    """A 1/16-width FCN-32s file; `nan` poisons one tensor (written with torch.save, as a diverged run or
    an outside file would be: save_model itself refuses)."""
    model = build_fcn("fcn32s", "vgg16", num_classes=21, width=0.0625)
    arch = dict(model.arch, **(arch_edit or {}))
    meta = {"arch": arch, "modalities": ["rgb"], "classes": [f"c{i}" for i in range(21)],
            "preprocessing": {"rgb": CAFFE_VGG.to_dict()}}
    save_model(model, meta, path)
    if nan:
        obj = torch.load(path, weights_only=True)
        obj["state_dict"][nan].view(-1)[0] = float("nan")
        torch.save(obj, path)
    return path


def test_save_model_refuses_nan(tmp_path: Path) -> None:
    model = build_fcn("fcn32s", "vgg16", num_classes=21, width=0.0625)
    with torch.no_grad():
        model.score_fr.bias[3] = float("inf")
    with pytest.raises(WeightsError) as ei:
        save_model(model, {}, tmp_path / "weights.pt")
    msg = str(ei.value)
    assert msg.startswith(f"{tmp_path / 'weights.pt'}: refusing to write") and "'score_fr.bias'" in msg
    assert files_under(tmp_path) == set()


# ---- images, labels, depth maps -------------------------------------------------------------------------
def test_huge_png_in_read_image_fails_before_decoding(huge: dict[str, Path]) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError) as ei:
        read_image(huge["png"])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB: nothing decoded
    msg = str(ei.value)
    assert msg.startswith(f"{huge['png']}: ") and "169000000 pixels" in msg
    assert f"over the limit of {DEFAULT_MAX_PIXELS}" in msg
    assert "FCN_MAX_IMAGE_PIXELS" in msg


def test_decompression_bomb_is_one_error_naming_the_file(huge: dict[str, Path]) -> None:
    with pytest.raises(DataError) as ei:
        read_image(huge["bomb"])
    assert str(huge["bomb"]) in str(ei.value) and "FCN_MAX_IMAGE_PIXELS" in str(ei.value)


def test_huge_label_and_depth_refused(huge: dict[str, Path]) -> None:
    with pytest.raises(DataError, match="label map has 169000000 pixels, over the limit"):
        read_label(huge["png"], 21)
    with pytest.raises(DataError, match="depth map has 144000000 pixels, over the limit"):
        read_depth_png(huge["depth"])


def test_cap_is_raised_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = big_png(tmp_path / "m.png", 300, 200)
    monkeypatch.setenv("FCN_MAX_IMAGE_PIXELS", "50000")
    with pytest.raises(DataError, match="300×200 = 60000 pixels, over the limit of 50000"):
        read_image(p)
    monkeypatch.setenv("FCN_MAX_IMAGE_PIXELS", "60000")
    assert read_image(p).shape == (200, 300, 3)


def test_fcn_segment_huge_png(tmp_path: Path, huge: dict[str, Path]) -> None:
    w = _tiny_weights(tmp_path / "w.pt")
    out = tmp_path / "out"
    err = one_error(fcn("segment", str(huge["png"]), "--weights", str(w), "--out", str(out), "--device", "cpu",
                        "--no-progress"))
    assert err.startswith(f"error: {huge['png']}: ") and "169000000 pixels" in err and "--max-pixels" in err, err
    assert not out.exists() or files_under(out) == set()


def test_fcn_segment_max_pixels_flag(tmp_path: Path) -> None:
    w = _tiny_weights(tmp_path / "w.pt")
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(img)
    err = one_error(fcn("segment", str(img), "--weights", str(w), "--out", str(tmp_path / "o"), "--device",
                        "cpu", "--no-progress", "--max-pixels", "1000"))
    assert "50×40 = 2000 pixels, over the limit of 1000" in err
    r = fcn("segment", str(img), "--weights", str(w), "--out", str(tmp_path / "o"), "--device", "cpu", "--no-progress",
            "--max-pixels", "2000")
    assert r.returncode == 0 and (tmp_path / "o" / "a.png").exists(), r.stderr[-2000:]


def test_fcn_hha_huge_depth(tmp_path: Path, huge: dict[str, Path]) -> None:
    out = tmp_path / "hha"
    err = one_error(fcn("hha", str(huge["depth"]), "-o", str(out), "--workers", "1", "--no-progress"))
    assert err.startswith(f"error: {huge['depth']}: ") and "144000000 pixels" in err, err
    assert not out.exists() or files_under(out) == set()


@pytest.mark.parametrize("fill", [0.0, np.nan, np.inf])
def test_hha_of_degenerate_depth_is_an_error(fill: float) -> None:
    from fcnlib.data.hha import CAMERAS, encode_hha

    with pytest.raises(DataError, match="no valid"):
        encode_hha(np.full((48, 64), fill), CAMERAS["nyu-color"])


def test_fcn_hha_all_zero_depth_png(tmp_path: Path) -> None:
    p = tmp_path / "zero.png"
    Image.fromarray(np.zeros((48, 64), np.uint16)).save(p)
    err = one_error(fcn("hha", str(p), "-o", str(tmp_path / "hha"), "--workers", "1", "--no-progress"))
    assert err.startswith(f"error: {p}: ") and "no valid" in err
    assert not (tmp_path / "hha" / "zero.png").exists()


@pytest.mark.parametrize("bad", ["/etc/passwd", "../../../etc/passwd", "a/../../b", "C:/x"])
def test_split_id_outside_the_dataset(tmp_path: Path, bad: str) -> None:
    from fcnlib.data.dataset import read_ids

    p = tmp_path / "train.txt"
    p.write_text(f"2008_000001\n{bad}\n")
    with pytest.raises(DataError) as ei:
        read_ids(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: line 2: ") and repr(bad) in msg and "remove or fix that line" in msg


# ---- weights --------------------------------------------------------------------------------------------
def _deflate_bomb(path: Path, src: Path) -> Path:
    """The tiny net's .pt with its first storage replaced by 256 MB of zeros, DEFLATE-compressed (~250 KB;
    the review's file had 2 GB, refused the same way from the zip directory); written streaming."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        big = next(i.filename for i in zin.infolist() if "/data/" in i.filename and not i.filename.endswith(".pkl"))
        for i in zin.infolist():
            if i.filename != big:
                zout.writestr(i, zin.read(i))
                continue
            zi = zipfile.ZipInfo(i.filename)
            zi.compress_type = zipfile.ZIP_DEFLATED
            with zout.open(zi, "w", force_zip64=True) as f:
                block = bytes(64 << 20)
                for _ in range(4):
                    f.write(block)
    return path


def test_deflate_storage_refused_before_loading(tmp_path: Path) -> None:
    src = _tiny_weights(tmp_path / "w.pt")
    bomb = _deflate_bomb(tmp_path / "bomb.pt", src)
    assert bomb.stat().st_size < 20 << 20
    with pytest.raises(WeightsError) as ei:
        load_model(bomb)
    msg = str(ei.value)
    assert msg.startswith(f"{bomb}: ") and ("compressed" in msg or "FCN_MAX_WEIGHTS_BYTES" in msg), msg


def test_absurd_num_classes_refused_before_building(tmp_path: Path) -> None:
    import resource

    p = _tiny_weights(tmp_path / "w.pt", arch_edit={"num_classes": 3_000_000})
    assert p.stat().st_size < 16 << 20  # the 0.0625-width net itself; the meta claims petabytes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(WeightsError) as ei:
        load_model(p)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB
    msg = str(ei.value)
    assert msg.startswith(f"{p}: ") and "FCN_MAX_WEIGHTS_BYTES" in msg and "delete" in msg, msg


def test_nan_weights_refused(tmp_path: Path) -> None:
    p = _tiny_weights(tmp_path / "w.pt", nan="score_fr.weight")
    with pytest.raises(WeightsError) as ei:
        load_model(p)
    assert "'score_fr.weight'" in str(ei.value) and "non-finite" in str(ei.value)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(img)
    err = one_error(fcn("segment", str(img), "--weights", str(p), "--out", str(tmp_path / "o"), "--device",
                        "cpu", "--no-progress"))
    assert err.startswith(f"error: {p}: ") and "non-finite" in err and "retrain" in err
    assert not (tmp_path / "o" / "a.png").exists()


def test_caffemodel_given_as_a_folder(tmp_path: Path) -> None:
    from fcnlib.models.caffe import read_caffemodel

    d = tmp_path / "fcn8s-heavy-pascal.caffemodel"
    d.mkdir()
    with pytest.raises(WeightsError, match="is a folder, not a .caffemodel"):
        read_caffemodel(d)


def test_weights_given_as_a_folder(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="is a folder"):
        load_model(tmp_path)


# ---- writes ---------------------------------------------------------------------------------------------
_FULL = """
import resource, signal, sys, torch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from fcnlib.files.io import atomic_save_torch
atomic_save_torch({"w": torch.ones(10)}, sys.argv[1])  # the previous, good checkpoint
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
from fcnlib.errors import FcnError
try:
    atomic_save_torch({"w": torch.zeros(1_000_000)}, sys.argv[1])
except FcnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
"""


def test_disk_full_under_a_checkpoint(tmp_path: Path) -> None:
    """A write that fails for lack of room (here RLIMIT_FSIZE, the same path as ENOSPC): one line naming
    the checkpoint and the cause, the previous checkpoint intact, no temp file left."""
    import subprocess

    from hostile import ROOT

    ck = tmp_path / "resume.pt"
    r = subprocess.run([sys.executable, "-c", _FULL, str(ck)], capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    err = one_error(r)
    assert err.startswith(f"error: {ck}: cannot write it: ") and "free disk space" in err, err
    assert torch.load(ck, weights_only=True)["w"].tolist() == [1.0] * 10
    assert files_under(tmp_path) == {"resume.pt"}


def test_disk_error_is_a_fcn_error() -> None:
    import errno

    from fcnlib.files.io import disk_error

    e = disk_error("/x/weights.pt", OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(e, DiskError) and str(e).startswith("/x/weights.pt: ") and "no space left" in str(e)


def test_pil_bomb_warning_does_not_leak(tmp_path: Path, huge: dict[str, Path]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError):
            read_image(huge["png"])
