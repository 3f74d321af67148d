"""`fcn segment`: any image size in, same-size palette PNG out, clear errors for bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnlib.errors import DataError, WeightsError
from fcnlib.eval import segment
from fcnlib.models import build_fcn, save_model
from fcnlib.models.preprocessing import CAFFE_VGG, HHA

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(autouse=True, params=[False, True], ids=["fp32-host", "bf16-host"])
def native_bf16(request, monkeypatch) -> bool:
    """`fcn segment` runs through fcnlib.runtime.fast, whose precision follows the CPU: force each kind of CPU's choice
    (fp32 + Winograd, or bf16 autocast + channels_last) so the results checked hold for both on any host."""
    from fcnlib.runtime import fast

    monkeypatch.setattr(fast, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def save_tiny(path: Path, modalities=("rgb",), winner: int | None = None) -> None:
    model = build_fcn("fcn32s", "vgg16", num_classes=21, width=0.0625)
    if winner is not None:
        with torch.no_grad():
            model.score_fr.bias[winner] = 5.0
    pre = {"rgb": CAFFE_VGG.to_dict(), "hha": HHA.to_dict()}
    meta = {"arch": model.arch, "modalities": list(modalities), "classes": [f"c{i}" for i in range(21)],
            "preprocessing": {m: pre[m] for m in modalities}}
    save_model(model, meta, path)


def test_odd_size_jpeg_gives_same_size_palette_png(tmp_path):
    w = tmp_path / "w.pt"
    save_tiny(w, winner=15)
    img = tmp_path / "in" / "odd.jpg"
    img.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (41, 67, 3), np.uint8)).save(img)
    out = tmp_path / "out"
    assert segment.cli([str(img), "--weights", str(w), "--out", str(out), "--overlay", "--device", "cpu",
                        "--quiet"]) == 0
    lab = Image.open(out / "odd.png")
    assert lab.mode == "P" and lab.size == (67, 41)
    assert np.all(np.asarray(lab) == 15)  # the biased class everywhere
    ov = Image.open(out / "odd_overlay.png")
    assert ov.size == (67, 41) and ov.mode == "RGB"


def test_directory_and_real_demo_image(tmp_path):
    demo = SHARED / "fcn_berkeleyvision" / "demo" / "image.jpg"
    if not demo.is_file():
        pytest.skip(f"real demo image not found at {demo} (needs /work/shared beside the repo)")
    w = tmp_path / "w.pt"
    save_tiny(w)
    d = tmp_path / "imgs"
    d.mkdir()
    Image.open(demo).crop((0, 0, 101, 77)).save(d / "a.png")  # a crop, written in the tmp dir
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(d / "b.bmp")
    (d / "notes.txt").write_text("not an image, skipped in directory mode")
    written = segment.segment_paths([d], w, tmp_path / "out", device="cpu", progress=False)
    assert [p.name for p in written] == ["a.png", "b.png"]
    assert Image.open(written[0]).size == (101, 77) and Image.open(written[1]).size == (30, 20)


def test_non_image_file_is_a_clear_data_error(tmp_path):
    w = tmp_path / "w.pt"
    save_tiny(w)
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello")
    with pytest.raises(DataError, match="notes.jpg.*not an image"):
        segment.cli([str(bad), "--weights", str(w), "--out", str(tmp_path / "o"), "--device", "cpu"])
    with pytest.raises(DataError, match="no such file"):
        segment.cli([str(tmp_path / "missing.jpg"), "--weights", str(w), "--device", "cpu"])


def test_model_needing_hha_is_refused(tmp_path):
    w = tmp_path / "hha.pt"
    save_tiny(w, modalities=("hha",))
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(img)
    with pytest.raises(WeightsError, match="hha"):
        segment.cli([str(img), "--weights", str(w), "--out", str(tmp_path / "o"), "--device", "cpu"])


def test_overlay_keeps_void_pixels():
    img = np.full((2, 2, 3), 100, np.uint8)
    lab = np.array([[0, 255], [1, 1]], np.uint8)
    ov = segment.overlay(img, lab)
    assert (ov[0, 1] == 100).all()  # void: the image unchanged
    assert (ov[0, 0] == 50).all()  # background colour (0,0,0) blended 50/50
    assert tuple(ov[1, 0]) == (114, 50, 50)  # aeroplane (128,0,0)


def test_weights_of_another_architecture_are_a_weights_error(tmp_path):
    w = tmp_path / "w.pt"
    save_tiny(w)
    ckpt = torch.load(w, weights_only=True)
    ckpt["meta"]["arch"] = {**ckpt["meta"]["arch"], "variant": "fcn8s"}  # says 8s, holds 32s tensors
    torch.save(ckpt, tmp_path / "mismatch.pt")
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(img)
    with pytest.raises(WeightsError, match="mismatch.pt"):
        segment.cli([str(img), "--weights", str(tmp_path / "mismatch.pt"), "--out", str(tmp_path / "o"),
                     "--device", "cpu"])
    assert not (tmp_path / "o").exists()  # nothing written before the weights were checked
