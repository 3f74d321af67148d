"""`fcn export`: the TorchScript / ONNX file gives the PyTorch net's labels, at sizes other than the traced one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from fcnlib import cli
from fcnlib.errors import ConfigError, WeightsError
from fcnlib.models import build_fcn, export, load_model, save_model
from fcnlib.models.preprocessing import CAFFE_VGG

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
