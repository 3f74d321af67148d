"""README's "In Python" and "Without fcnlib" blocks run as written (doctest), on a tiny net saved as weights.pt
and a 375×500 image.jpg in a scratch folder; `import fcnlib` stays free of torch until Segmenter is used."""

from __future__ import annotations

import doctest
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnlib.facts.datasets import VOC_CLASSES
from fcnlib.models import ModelMeta, build_fcn, export, save_model
from fcnlib.models.preprocessing import CAFFE_VGG

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _pycon_blocks(section: str) -> list[str]:
    body = README.split(f"### {section}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in body.split("```pycon\n")[1:]]
    assert blocks, f"README section {section!r} has no ```pycon block"
    return blocks


def _run_doctest(text: str, name: str) -> None:
    test = doctest.DocTestParser().get_doctest(text, {}, name, "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=sys.stdout.write)
    assert runner.failures == 0 and runner.tries > 0, f"README {name}: {runner.failures} of {runner.tries} failed"


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """weights.pt (a demo-width VOC FCN-8s, person-biased) and image.jpg (375×500) in the working directory."""
    torch.manual_seed(0)
    model = build_fcn("fcn8s", "vgg16", num_classes=21, width=0.0625)
    with torch.no_grad():
        model.score_fr.bias[15] = 1.0
    save_model(model, ModelMeta.create(model.arch, ["rgb"], {"rgb": CAFFE_VGG}, list(VOC_CLASSES)),
               tmp_path / "weights.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (375, 500, 3), np.uint8)).save(tmp_path / "image.jpg")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_python_api_block(scratch):
    (block,) = _pycon_blocks("In Python")
    _run_doctest(block, "In Python")


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="onnxruntime not installed (pip install 'fcnlib[export]')")
def test_onnxruntime_block(scratch):
    assert "`fcn export weights.pt --format onnx` writes `weights.onnx` and `weights.onnx.json`" in README
    export.export("weights.pt", export.default_out(Path("weights.pt"), "onnx"), "onnx")
    assert Path("weights.onnx").is_file() and Path("weights.onnx.json").is_file()
    (block,) = _pycon_blocks("Without fcnlib: ONNX and TorchScript")
    _run_doctest(block + ">>> import fcnlib\n"
                 ">>> ref = fcnlib.Segmenter('weights.pt', 'cpu', precision='fp32')('image.jpg')\n"
                 ">>> bool((labels == ref.labels).mean() > 0.999)\nTrue\n", "ONNX")


def test_import_fcnlib_is_cheap_and_exposes_segmenter():
    code = ("import sys, fcnlib; assert 'torch' not in sys.modules, 'import fcnlib loaded torch'; "
            "from fcnlib import Segmenter, Segmentation; assert Segmenter.__name__ == 'Segmenter'; "
            "assert 'torch' in sys.modules, 'imported on first use'")
    subprocess.run([sys.executable, "-c", code], check=True)
