"""`fcn segment`: any image size in, same-size palette PNG out, clear errors for bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_eval import conv_output_dtypes
from helpers_paths import need_shared
from PIL import Image

from fcnlib.cli import segment as segment_cli
from fcnlib.errors import DataError, WeightsError
from fcnlib.eval import segment
from fcnlib.facts.datasets import MODALITY_CHANNELS
from fcnlib.models import build_fcn, save_model
from fcnlib.models.preprocessing import CAFFE_VGG, DEPTH_LOG, HHA


@pytest.fixture(autouse=True, params=[False, True], ids=["fp32-host", "bf16-host"])
def native_bf16(request, monkeypatch) -> bool:
    """`fcn segment` runs through fcnlib.runtime.fast, whose precision follows the CPU: force each kind of CPU's choice
    (fp32 + Winograd, or bf16 autocast + channels_last) so the results checked hold for both on any host."""
    from fcnlib.runtime import compute

    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def save_tiny(path: Path, modalities=("rgb",), winner: int | None = None, demo: bool = False,
              varied: bool = False) -> None:
    """A demo-width FCN-32s; `winner` biases one class everywhere, `varied` gives labels that follow the image."""
    channels = sum(MODALITY_CHANNELS[m] for m in modalities)
    model = build_fcn("fcn32s", "vgg16", num_classes=21, width=0.0625, in_channels=channels)
    with torch.no_grad():
        if winner is not None:
            model.score_fr.bias[winner] = 5.0
        if varied:
            torch.manual_seed(0)
            for name, p in model.named_parameters():
                if not name.startswith("upscore"):
                    torch.nn.init.kaiming_normal_(p) if p.dim() == 4 else p.zero_()
    pre = {"rgb": CAFFE_VGG.to_dict(), "hha": HHA.to_dict(), "depth": DEPTH_LOG.to_dict()}
    meta = {"arch": model.arch, "modalities": list(modalities), "classes": [f"c{i}" for i in range(21)],
            "preprocessing": {m: pre[m] for m in modalities}, **({"data_source": "demo"} if demo else {})}
    save_model(model, meta, path)


def blocks(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An H×W×3 uint8 image of 64-pixel colour blocks (structure an FCN-32s's labels can follow)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (-(-h // 64), -(-w // 64), 3), np.uint8)
    return np.kron(coarse, np.ones((64, 64, 1), np.uint8))[:h, :w]


def test_odd_size_jpeg_gives_same_size_palette_png(tmp_path):
    w = tmp_path / "w.pt"
    save_tiny(w, winner=15)
    img = tmp_path / "in" / "odd.jpg"
    img.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (41, 67, 3), np.uint8)).save(img)
    out = tmp_path / "out"
    assert segment_cli.cli([str(img), "--weights", str(w), "--out", str(out), "--overlay", "--device", "cpu",
                        "--no-progress"]) == 0
    lab = Image.open(out / "odd.png")
    assert lab.mode == "P" and lab.size == (67, 41)
    assert np.all(np.asarray(lab) == 15)  # the biased class everywhere
    ov = np.asarray(Image.open(out / "odd_overlay.png"))
    assert ov.shape[0] >= 41 and ov.shape[1] > 67  # the blend, with the legend on its right
    blend = segment.overlay(np.asarray(Image.open(img).convert("RGB")), np.asarray(lab))
    assert np.array_equal(ov[:41, :67], blend)


def test_directory_and_real_demo_image(tmp_path):
    demo = need_shared("fcn_berkeleyvision/demo/image.jpg")
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
        segment_cli.cli([str(bad), "--weights", str(w), "--out", str(tmp_path / "o"), "--device", "cpu"])
    with pytest.raises(DataError, match="no such file"):
        segment_cli.cli([str(tmp_path / "missing.jpg"), "--weights", str(w), "--device", "cpu"])


def test_model_needing_hha_is_refused(tmp_path):
    w = tmp_path / "hha.pt"
    save_tiny(w, modalities=("hha",))
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(img)
    with pytest.raises(WeightsError, match="hha"):
        segment_cli.cli([str(img), "--weights", str(w), "--out", str(tmp_path / "o"), "--device", "cpu"])


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
        segment_cli.cli([str(img), "--weights", str(tmp_path / "mismatch.pt"), "--out", str(tmp_path / "o"),
                     "--device", "cpu"])
    assert not (tmp_path / "o").exists()  # nothing written before the weights were checked


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_switch_sets_the_convolutions_dtype(tmp_path, precision, dtype):
    """`fcn segment --precision` decides the dtype on either kind of host (both forced by the fixture)."""
    w = tmp_path / "w.pt"
    save_tiny(w, winner=3)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((24, 20, 3), np.uint8)).save(img)
    seen = conv_output_dtypes(lambda: segment_cli.cli([str(img), "--weights", str(w), "--out", str(tmp_path / "out"),
                                                       "--device", "cpu", "--precision", precision,
                                                       "--no-progress"]))
    assert seen == {dtype}
    assert np.all(np.asarray(Image.open(tmp_path / "out" / "a.png")) == 3)


# --- fcnlib.Segmenter: the Python API ----------------------------------------------------------------


def test_segmenter_takes_a_path_string_a_pil_image_or_an_array(tmp_path):
    import fcnlib

    w = tmp_path / "w.pt"
    save_tiny(w, varied=True)
    img = blocks(161, 210)
    Image.fromarray(img).save(tmp_path / "x.png")
    seg = fcnlib.Segmenter(str(w), device="cpu")
    results = [seg(str(tmp_path / "x.png")), seg(tmp_path / "x.png"), seg(Image.open(tmp_path / "x.png")), seg(img)]
    first = results[0]
    assert first.labels.shape == (161, 210) and first.scores.shape == (21, 161, 210)
    assert first.scores.dtype == np.float32 and len(np.unique(first.labels)) > 2
    assert np.array_equal(first.labels, first.scores.argmax(0))
    assert first.classes == [f"c{i}" for i in range(21)] and first.head == "sem"
    for r in results[1:]:
        assert np.array_equal(r.labels, first.labels) and np.allclose(r.scores, first.scores)
    # the same labels as `fcn segment` writes
    segment.segment_paths([tmp_path / "x.png"], seg, tmp_path / "out", progress=False)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "x.png")), first.labels)


def test_segmenter_result_overlay_has_a_legend_of_present_classes(tmp_path):
    w = tmp_path / "w.pt"
    save_tiny(w, varied=True)
    r = segment.Segmenter(w, device="cpu")(blocks(160, 192, seed=3))
    ov = r.overlay()
    assert np.array_equal(ov[:160, :192], segment.overlay(r.image, r.labels))
    panel = ov[:, 192:]
    pal = segment.voc_palette()
    present = set(np.unique(r.labels).tolist())
    for c in range(21):  # a swatch (a solid LEGEND_SWATCH² block) for each present class, none for others
        k = segment.LEGEND_SWATCH
        solid = np.lib.stride_tricks.sliding_window_view(np.all(panel == pal[c], axis=-1), (k, k)).all((-1, -2))
        assert solid.any() == (c in present), c
    assert len(present) > 1 and np.array_equal(r.overlay(legend=False), ov[:160, :192])


def test_demo_weights_are_marked_on_overlay_and_cli(tmp_path, capsys):
    img = blocks(40, 50)
    for demo in (False, True):
        w = tmp_path / f"w{demo}.pt"
        save_tiny(w, winner=3, demo=demo)
        r = segment.Segmenter(w, device="cpu")(img)
        assert r.demo is demo
        top = r.overlay()[:segment.LEGEND_ROW, 50:].astype(int)  # the legend's first row (class 3: olive)
        red = (top[..., 0] - top[..., 1] > 80) & (top[..., 1] == top[..., 2])  # DEMO_WARNING's red text
        assert red.any() == demo
        Image.fromarray(img).save(tmp_path / "x.png")
        assert segment_cli.cli([str(tmp_path / "x.png"), "--weights", str(w), "--out", str(tmp_path / "o"),
                            "--device", "cpu", "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert ("demo weights" in err) is demo


@pytest.mark.parametrize("bad, match", [
    (np.zeros((20, 30), np.uint8), r"shape \(20, 30\).*H×W×3 uint8"),
    (np.zeros((20, 30, 3), np.float32), "float32.*H×W×3 uint8"),
    (np.zeros((20, 30, 4), np.uint8), r"\(20, 30, 4\)"),
    (np.zeros((0, 30, 3), np.uint8), r"\(0, 30, 3\)"),
    ([[1, 2, 3]], "list; pass a file path, a PIL image"),
    (torch.zeros(3, 20, 30), "Tensor; pass a file path"),
    ({"hha": np.zeros((20, 30, 3), np.uint8)}, r"got inputs \['hha'\].*\['rgb'\]"),
])
def test_segmenter_refuses_bad_input_in_one_line(tmp_path, bad, match):
    w = tmp_path / "w.pt"
    save_tiny(w)
    with pytest.raises(DataError, match=match):
        segment.Segmenter(w, device="cpu")(bad)


def test_segmenter_missing_or_broken_file_names_it(tmp_path):
    w = tmp_path / "w.pt"
    save_tiny(w)
    seg = segment.Segmenter(w, device="cpu")
    with pytest.raises(DataError, match="nope.jpg"):
        seg(str(tmp_path / "nope.jpg"))
    (tmp_path / "bad.jpg").write_text("not a jpeg")
    with pytest.raises(DataError, match="bad.jpg"):
        seg(tmp_path / "bad.jpg")


def test_segmenter_multimodal_net_takes_a_dict_per_modality(tmp_path):
    w = tmp_path / "rgbd.pt"
    save_tiny(w, modalities=("rgb", "depth"), varied=True)
    seg = segment.Segmenter(w, device="cpu")
    rgb = blocks(70, 90)
    depth = np.linspace(500, 5000, 70 * 90, dtype=np.float32).reshape(70, 90)
    r = seg({"rgb": rgb, "depth": depth})
    assert r.labels.shape == (70, 90) and r.image is rgb
    # the same numbers as the net on the concatenated, preprocessed input
    x = torch.cat([CAFFE_VGG.apply(rgb), DEPTH_LOG.apply(depth)])[None]
    with torch.no_grad():
        ref = seg.model(x)[0].numpy()
    np.testing.assert_allclose(r.scores, ref, rtol=1e-5, atol=1e-4)
    with pytest.raises(DataError, match=r"takes modalities \['rgb', 'depth'\]; pass a dict"):
        seg(rgb)
    with pytest.raises(DataError, match="sizes differ"):
        seg({"rgb": rgb, "depth": depth[:60]})
    with pytest.raises(DataError, match="depth as an H×W array in millimetres"):
        seg({"rgb": rgb, "depth": str(tmp_path / "d.png")})

