"""`fcn export`: the TorchScript / ONNX file gives the PyTorch net's labels, at sizes other than the traced one,
and `fcn segment`'s (fcnlib.Segmenter, fp32) labels and scores for trained-like nets whose upsamplers are frozen
bilinear (the path inference takes per class)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fcnlib import Segmenter, cli
from fcnlib.errors import ConfigError, WeightsError
from fcnlib.models import ModelMeta, build_fcn, export, load_model, save_model
from fcnlib.models.fcn import Upsampler
from fcnlib.models.preprocessing import CAFFE_VGG
from fcnlib.train import freeze_upsampling

SIZES = [(64, 80), (75, 61), (120, 97)]  # none is the traced 224×224


def _onnx_ready() -> str | None:
    """Why the ONNX round trip cannot run here, or None when it can."""
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    return f"{' and '.join(missing)} not installed (pip install 'fcnlib[export]')" if missing else None


def save_demo_net(path: Path, variant: str = "fcn8s", heads: dict | None = None) -> None:
    """A demo-width net (1/16 channels, as config/demo.yaml) with every weight random, so labels vary."""
    torch.manual_seed(0)
    model = build_fcn(variant, "vgg16", num_classes=33 if heads else 21, width=0.0625, heads=heads)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    meta = {"arch": model.arch, "modalities": ["rgb"], "classes": [f"c{i}" for i in range(21)],
            "preprocessing": {"rgb": CAFFE_VGG.to_dict()}}
    save_model(model, meta, path)


def _reference(weights: Path, x: torch.Tensor) -> list[torch.Tensor]:
    model, _ = load_model(weights, "cpu")
    with torch.no_grad():
        out = model.eval()(x)
    return list(out.values()) if isinstance(out, dict) else [out]


def _check_round_trip(weights: Path, out: Path, fmt: str, exact: bool) -> None:
    run = export.load_exported(out)
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w)) * 50
        ref, got = _reference(weights, x), run(x)
        assert len(got) == len(ref)
        for r, g in zip(ref, got, strict=True):
            assert g.shape == r.shape == (2, r.shape[1], h, w)
            labels_ref, labels_got = r.argmax(1), g.argmax(1)
            assert labels_ref.unique().numel() > 2  # a net whose labels can disagree
            agree = (labels_ref == labels_got).float().mean().item()
            if exact:
                assert agree == 1.0, (fmt, h, w, agree)
            else:  # another runtime's kernels: equal up to float rounding at near-ties
                assert agree >= 0.999, (fmt, h, w, agree)
                torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-3)


def test_torchscript_gives_the_pytorch_labels(tmp_path, capsys):
    w = tmp_path / "weights.pt"
    save_demo_net(w)
    assert cli.main(["export", str(w), "--format", "torchscript", "--size", "96", "96"]) == 0
    out = tmp_path / "weights.torchscript.pt"  # the default name beside the weights
    assert "weights.torchscript.pt" in capsys.readouterr().out
    _check_round_trip(w, out, "torchscript", exact=True)
    info = json.loads(Path(f"{out}.json").read_text())
    assert info["input"]["preprocessing"]["rgb"] == CAFFE_VGG.to_dict() and info["outputs"] == ["sem"]
    files = {"fcn_meta.json": ""}
    torch.jit.load(str(out), _extra_files=files)
    assert json.loads(files["fcn_meta.json"]) == info


def test_torchscript_two_headed_net(tmp_path):
    w = tmp_path / "sift.pt"
    save_demo_net(w, "fcn16s", heads={"sem": 33, "geo": 3})
    out = tmp_path / "sift.ts"
    info = export.export(w, out, "torchscript", size=(64, 64))
    assert info["outputs"] == ["sem", "geo"]
    _check_round_trip(w, out, "torchscript", exact=True)


@pytest.mark.skipif(_onnx_ready() is not None, reason=str(_onnx_ready()))
def test_onnx_gives_the_pytorch_labels(tmp_path):
    w = tmp_path / "weights.pt"
    save_demo_net(w)
    out = tmp_path / "net.onnx"
    assert cli.main(["export", str(w), "--format", "onnx", "-o", str(out), "--size", "96", "96"]) == 0
    _check_round_trip(w, out, "onnx", exact=False)
    assert json.loads(Path(f"{out}.json").read_text())["format"] == "onnx"


def test_export_refuses_bad_requests(tmp_path):
    w = tmp_path / "weights.pt"
    save_demo_net(w, "fcn32s")
    with pytest.raises(ConfigError, match="overwrite"):
        export.export(w, w, "torchscript")
    with pytest.raises(ConfigError, match="--format"):
        export.export(w, tmp_path / "x", "tflite")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="junk.pt"):
        export.load_exported(tmp_path / "junk.pt")
    assert not (tmp_path / "x").exists()


def save_trained_like(path: Path, variant: str) -> None:
    """A demo-width net as the trainer leaves one with learn_upsampling false: learned layers random, every
    upscore* frozen at bilinear (freeze_upsampling), so inference runs them per class."""
    torch.manual_seed(1)
    model = build_fcn(variant, "vgg16", num_classes=21, width=0.0625)
    with torch.no_grad():  # He init keeps the signal alive through the trunk, so labels follow the image
        for name, p in model.named_parameters():
            if not name.startswith("upscore"):
                torch.nn.init.kaiming_normal_(p) if p.dim() == 4 else p.zero_()
    frozen = freeze_upsampling(model)
    assert frozen and all(isinstance(getattr(model, n), Upsampler) for n in frozen)
    meta = ModelMeta.create(model.arch, ["rgb"], {"rgb": CAFFE_VGG}, [f"c{i}" for i in range(21)])
    save_model(model, meta, path)


def _assert_same_prediction(got: torch.Tensor, ref_scores: np.ndarray, ref_labels: np.ndarray) -> None:
    """Scores close; labels equal except at ties (where the reference's top two scores are within rounding)."""
    ref = torch.from_numpy(ref_scores)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    lab = got.argmax(0).numpy()
    diff = lab != ref_labels
    margin = np.take_along_axis(ref_scores, ref_labels[None].astype(np.int64), 0)[0] - \
        np.take_along_axis(ref_scores, lab[None], 0)[0]
    assert np.all(margin[diff] <= 1e-4 * float(ref.abs().max())), f"{diff.sum()} labels differ beyond ties"


@pytest.mark.parametrize("variant", ["fcn32s", "fcn16s", "fcn8s"])
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_of_frozen_bilinear_net_equals_segment(tmp_path, variant, fmt):
    if fmt == "onnx" and _onnx_ready() is not None:
        pytest.skip(f"ONNX round trip: {_onnx_ready()}")
    w = tmp_path / "weights.pt"
    save_trained_like(w, variant)
    out = tmp_path / f"net{export.SUFFIX[fmt]}"
    info = export.export(w, out, fmt, size=(96, 96))
    run = export.load_exported(out)
    seg = Segmenter(w, "cpu", precision="fp32")  # fcn segment's forward, in fp32
    pre = CAFFE_VGG
    rng = np.random.default_rng(7)
    for h, w_ in [(160, 208), (175, 141), (241, 197)]:  # none is the traced 96×96; non-square, odd
        img = np.kron(rng.integers(0, 256, (4, 4, 3), np.uint8), np.ones((64, 64, 1), np.uint8))[:h, :w_]
        ref = seg(img)
        assert len(np.unique(ref.labels)) > 2  # labels that vary over the image: a shifted map would differ
        (got,) = run(pre.apply(img)[None])
        assert got.shape == (1, 21, h, w_)
        _assert_same_prediction(got[0], ref.scores, ref.labels)
    assert info["outputs"] == ["sem"] and info["classes"]["sem"] == [f"c{i}" for i in range(21)]


@pytest.mark.skipif(_onnx_ready() is not None, reason=str(_onnx_ready()))
def test_onnx_graph_names_its_outputs_as_the_sidecar(tmp_path):
    import onnx

    w = tmp_path / "sift.pt"
    save_demo_net(w, "fcn16s", heads={"sem": 33, "geo": 3})
    out = tmp_path / "sift.onnx"
    info = export.export(w, out, "onnx", size=(64, 64))
    graph = onnx.load(str(out)).graph
    assert [o.name for o in graph.output] == info["outputs"] == ["sem", "geo"]
    assert [i.name for i in graph.input] == [info["input"]["name"]]
    sidecar = json.loads(Path(f"{out}.json").read_text())
    assert sidecar["outputs"] == ["sem", "geo"] and sidecar["input"]["preprocessing"]["rgb"] == CAFFE_VGG.to_dict()
