"""Precision per device generation, the fp16 GradScaler for the summed loss, LRN in fp32 and deterministic,
and the backend switches. Everything a CPU can show: CPU fp16 autocast runs the same
overflow arithmetic as a GPU's fp16."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from fcnlib.models import build_fcn
from fcnlib.models.alexnet import CaffeLRN
from fcnlib.runtime import determinism, precision

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize(("cap", "dtype"), [((6, 0), torch.float16), ((7, 0), torch.float16),
                                            ((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                            ((8, 6), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_cuda_dtype_per_generation(cap, dtype):
    # V100 (7.0) / T4 (7.5) report is_bf16_supported() == True, but cuDNN has no native bf16 conv there
    assert precision.cuda_autocast_dtype(cap) == dtype


def test_autocast_dtype_uses_capability(monkeypatch):
    from fcnlib.runtime import compute

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert compute.autocast_dtype(torch.device("cuda", 0)) == torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    assert compute.autocast_dtype(torch.device("cuda", 0)) == torch.bfloat16


def test_scaler_init_scale():
    from fcnlib.models.preprocessing import CAFFE_VGG, TORCHVISION

    assert precision.scaler_init_scale("mean", 250_000) == 2.0**16
    s = precision.scaler_init_scale("sum", 500 * 500)
    assert s == 0.125 and s * 500 * 500 <= precision.FP16_HEADROOM  # issue: finite only at ≤ 2^-2
    caffe = precision.input_range(CAFFE_VGG)
    assert caffe == 255.0 and 4.0 < precision.input_range(TORCHVISION) < 5.0
    s = precision.scaler_init_scale("sum", 20 * 500 * 500, caffe)
    assert s == precision.SCALE_MIN  # clamped
    assert precision.scaler_init_scale("sum", 1) == 2.0**15


def _skipped_steps(init_scale: float, steps: int = 4, size: int = 64) -> tuple[list[bool], bool]:
    """Train a width-1/16 FCN-32s with the summed loss under CPU fp16 autocast; which steps the scaler
    skipped (its scale dropped), and whether the weights stayed finite."""
    torch.manual_seed(0)
    net = build_fcn("fcn32s", "vgg16", num_classes=3, width=0.0625)
    for m in net.modules():  # non-zero score layer so gradients reach the trunk
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=(2.0 / m.weight[0].numel()) ** 0.5)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-10, momentum=0.99)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    g = torch.Generator().manual_seed(1)
    skipped = []
    for _ in range(steps):
        x = torch.randn(2, 3, size, size, generator=g) * 60.0
        y = torch.randint(0, 3, (2, size, size), generator=g)
        with torch.autocast("cpu", dtype=torch.float16):
            out = net(x)
        loss = F.cross_entropy(out.float(), y, reduction="sum")
        opt.zero_grad()
        scaler.scale(loss).backward()
        before = scaler.get_scale()
        scaler.step(opt)
        scaler.update()
        skipped.append(scaler.get_scale() < before)
    return skipped, all(torch.isfinite(p).all() for p in params)


def test_summed_loss_scaler_skips_no_step():
    pixels = 2 * 64 * 64
    skipped, finite = _skipped_steps(precision.scaler_init_scale("sum", pixels, 255.0))  # Caffe-range input
    assert not any(skipped[1:]) and finite, skipped
    assert not skipped[0]  # the fitted scale does not even need the first step to find its level
    # the default 2^16 overflows fp16 on this summed loss: the scaler has to skip steps to get down
    skipped_default, _ = _skipped_steps(2.0**16, steps=2)
    assert all(skipped_default)


def test_make_scaler_only_for_fp16():
    assert precision.make_scaler(torch.bfloat16, torch.device("cpu"), "sum", 100) is None
    assert precision.make_scaler(None, torch.device("cpu"), "sum", 100) is None
    s = precision.make_scaler(torch.float16, torch.device("cpu"), "sum", 500 * 500)
    assert s.get_scale() == 0.125


def _caffe_scale(shape=(2, 16, 9, 11), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 600.0  # conv1 outputs on 0–255 input reach hundreds


def test_lrn_equals_pytorch_fp32():
    x = _caffe_scale().double()
    ref = F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)
    got = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)(x)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    assert got.dtype == torch.float64


def test_lrn_fp16_autocast_equals_fp32():
    x = _caffe_scale()
    lrn = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)
    ref = lrn(x)
    x16 = x.half()
    with torch.autocast("cpu", dtype=torch.float16):
        got = lrn(x16)
        # PyTorch's own LRN in fp16: squares overflow past 256 and the window's output collapses to 0
        plain = F.local_response_norm(x16, 5, alpha=1e-4, beta=0.75, k=1.0)
    assert (x > 256).any()
    torch.testing.assert_close(got.float(), ref, rtol=1e-3, atol=1e-3)  # fp16 input rounding only
    assert not torch.allclose(plain.float(), ref, rtol=1e-2, atol=1e-2)


def test_lrn_deterministic_algorithms_and_no_avg_pool3d():
    x = _caffe_scale().requires_grad_(True)
    lrn = CaffeLRN(5, alpha=1e-4, beta=0.75, k=1.0)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        y = lrn(x)
        y.sum().backward()
    finally:
        torch.use_deterministic_algorithms(prev)
    names, todo, seen = set(), [y.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        names.add(type(fn).__name__)
        todo += [f for f, _ in fn.next_functions]
    assert not any("AvgPool3D" in n or "AvgPool3d" in n for n in names), names
    xr = x.detach().double().requires_grad_(True)
    F.local_response_norm(xr, 5, alpha=1e-4, beta=0.75, k=1.0).sum().backward()
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("backbone", ["alexnet", "googlenet"])
def test_lrn_nets_use_caffe_lrn(backbone):
    net = build_fcn("fcn32s", backbone, num_classes=3, width=0.0625)
    lrns = [m for m in net.modules() if isinstance(m, torch.nn.LocalResponseNorm)]
    assert lrns and all(isinstance(m, CaffeLRN) for m in lrns)


def test_resolve_switches():
    det = determinism.resolve_switches("cuda", deterministic=True, fixed_sizes=True)
    assert det == {"cudnn_benchmark": False, "cudnn_deterministic": True, "deterministic_algorithms": True,
                   "tf32": False, "cublas_workspace_config": ":4096:8"}
    assert determinism.resolve_switches("cuda", False, True)["cudnn_benchmark"] is True
    assert determinism.resolve_switches("cuda", False, False)["cudnn_benchmark"] is False  # batch-1 native
    assert determinism.resolve_switches("cpu", False, True)["cudnn_benchmark"] is False
    assert determinism.resolve_switches("cpu", True, False)["deterministic_algorithms"] is True


def test_apply_switches_deterministic(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv("FCN_DETERMINISTIC", raising=False)
    prev = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic)
    try:
        determinism.apply_switches(determinism.resolve_switches("cuda", True, True))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert determinism.deterministic_requested()
    finally:
        torch.use_deterministic_algorithms(prev[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = prev[1], prev[2]


def test_fixed_input_size(tmp_path):
    import numpy as np

    from fcnlib.files.io import write_png

    for i, (h, w) in enumerate([(8, 10), (8, 10), (9, 10)]):
        write_png(tmp_path / f"{i}.png", np.zeros((h, w, 3), np.uint8))
    assert determinism.fixed_input_size([tmp_path / "0.png", tmp_path / "1.png"])
    assert not determinism.fixed_input_size(sorted(tmp_path.glob("*.png")))
    (tmp_path / "junk.png").write_bytes(b"not an image")  # unreadable (or over the pixel cap): "not one size",
    assert not determinism.fixed_input_size([tmp_path / "0.png", tmp_path / "junk.png"])  # the loader reports it
    assert not determinism.fixed_input_size([tmp_path / "0.png", tmp_path / "gone.png"])


def test_dtype_recorded_in_timing():
    from fcnlib.eval.evaluate import time_forward

    net = build_fcn("fcn32s", "vgg16", num_classes=3, width=0.0625)
    t = time_forward(net, size=32, runs=1, warmup=0, device="cpu")
    from fcnlib.runtime.compute import autocast_dtype

    assert t["dtype"] == precision.dtype_name(autocast_dtype("cpu"))
    assert time_forward(net, size=32, runs=1, warmup=0, device="cpu", fast_path=False)["dtype"] == "float32"
