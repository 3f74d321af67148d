"""fcnlib.runtime.fast and bench/padskip.py: the padding skip equals the padded net (outputs and gradients),
reduced precision keeps the argmax, and the bench baseline computes the same function as fcnlib's FCN-8s.
Tolerances only; speed is measured in bench/run.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fcnlib.models import build_fcn
from fcnlib.runtime import compute, fast

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def padskip(bench_module):
    """bench/padskip.py: the exact padding skip is measured by the bench only, but kept exact here."""
    return bench_module("padskip")


def _randomise(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every conv random (He-normal) with non-zero biases, so constants, frames and skips all matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
    return m


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture(params=[False, True], ids=["fp32-host", "bf16-host"])
def native_bf16(request, monkeypatch) -> bool:
    """Which kind of CPU the fast path's choices (autocast dtype, channels_last, Winograd) are made for,
    forced, so that both kinds are tested on every host (bf16 is emulated, slower, on AVX2)."""
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: request.param)
    return request.param


@pytest.fixture(scope="module")
def net8() -> torch.nn.Module:
    return _randomise(build_fcn("fcn8s", width=0.125, num_classes=7)).eval()


SIZES = [(1, 1), (2, 3), (7, 13), (31, 32), (33, 47), (64, 65), (129, 96)]


@pytest.mark.parametrize("hw", SIZES)
def test_padskip_equals_padded_net(padskip, net8: torch.nn.Module, hw: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(hw[0] * 1000 + hw[1]))
    with torch.no_grad():
        ref = net8(x)
        out = padskip.padskip_forward(net8, x, winograd=False)
    assert out.shape == ref.shape == (2, 7, *hw)
    assert _rel(ref[0], ref[1]) > 1e-3  # the two inputs give different outputs: it sees the image
    assert _rel(out, ref) < 2e-5  # fp32 rounding only


@pytest.mark.parametrize("variant", ["fcn32s", "fcn16s", "fcn8s-atonce"])
def test_padskip_other_variants(padskip, variant: str) -> None:
    m = _randomise(build_fcn(variant, width=0.125, num_classes=5), seed=1).eval()
    for hw in [(5, 9), (77, 64)]:
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            assert _rel(padskip.padskip_forward(m, x, winograd=False), m(x)) < 2e-5


def test_padskip_two_heads(padskip) -> None:
    m = _randomise(build_fcn("fcn16s", width=0.125, heads={"sem": 6, "geo": 3}), seed=2).eval()
    x = torch.randn(1, 3, 45, 60)
    with torch.no_grad():
        ref, out = m(x), padskip.padskip_forward(m, x, winograd=False)
    assert set(out) == {"sem", "geo"}
    for h in out:
        assert _rel(out[h], ref[h]) < 2e-5


def test_padskip_dense_threshold_irrelevant(padskip, net8: torch.nn.Module) -> None:
    """All-skip, default and all-dense paths agree: the threshold is a speed knob only."""
    x = torch.randn(1, 3, 50, 71)
    with torch.no_grad():
        outs = [padskip.padskip_forward(net8, x, winograd=False, dense_above=d) for d in (1.01, 0.56, 0.0)]
    assert _rel(outs[0], outs[2]) < 2e-5 and _rel(outs[1], outs[2]) < 2e-5


def test_frames_are_needed(padskip, net8: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge frames (zero padding of later layers) reach the output: dropping them must break equality,
    so the equality above is not vacuous."""
    orig = padskip._propagate

    def no_frames(*a, **k):  # noqa: ANN002, ANN003
        r = orig(*a, **k)
        return padskip._Region(r.h, r.w, r.rect, (0, 0, 0, 0))

    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        ref = net8(x)
        monkeypatch.setattr(padskip, "_propagate", no_frames)
        bad = padskip.padskip_forward(net8, x, winograd=False, dense_above=1.01)
    assert _rel(bad, ref) > 1e-3  # ≥50× the tolerance above


def test_padskip_gradients_equal(padskip) -> None:
    """Training through the skip: the same gradient for every parameter. In float64, so that the check is
    of the algebra (1e-9) and not of fp32 summation order over ~10⁵ skipped positions (~1e-4)."""
    m = _randomise(build_fcn("fcn8s", width=0.125, num_classes=4), seed=3).eval().double()  # eval: no dropout
    x = torch.randn(1, 3, 37, 52, dtype=torch.float64)
    lab = torch.randint(0, 4, (1, 37, 52))
    grads = []
    for f in (m, lambda t: padskip.padskip_forward(m, t, winograd=False)):
        m.zero_grad(set_to_none=True)
        loss = F.cross_entropy(f(x), lab)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and "conv1_1.weight" in grads[0]
    for n in grads[0]:
        assert _rel(grads[1][n], grads[0][n]) < 1e-9, n


@pytest.mark.skipif(not torch._nnpack_available(), reason="NNPACK not built into this torch")
def test_winograd_tolerance(padskip, net8: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """NNPACK Winograd: fp32 arithmetic, different rounding — logits within 1e-4 relative, same argmax."""
    monkeypatch.setattr(fast, "WINOGRAD_MIN_CHANNELS", 1)  # every 3×3 conv of the narrow test net
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        ref = net8(x)
        for skip in (1.01, 0.0):
            out = padskip.padskip_forward(net8, x, winograd=True, dense_above=skip)
            assert _rel(out, ref) < 1e-4
            assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.999


@pytest.mark.skipif(not torch._nnpack_available(), reason="NNPACK not built into this torch")
@pytest.mark.parametrize("wide", [True, False], ids=["nnpack", "onednn"])
def test_winograd_forward_is_the_dense_padskip(padskip, net8: torch.nn.Module, monkeypatch: pytest.MonkeyPatch,
                                               wide: bool) -> None:
    """FastFCN's Winograd path (fast.winograd_forward) computes bit for bit what it computed when it ran
    through the padding skip with dense_above=0 (every layer dense), with and without NNPACK taking the convs."""
    if wide:
        monkeypatch.setattr(fast, "WINOGRAD_MIN_CHANNELS", 1)
    x = torch.randn(1, 3, 75, 58, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        old = padskip.padskip_forward(net8, x, winograd=True, dense_above=0.0)
        new = fast.winograd_forward(net8, x)
    assert torch.equal(new, old)
    assert _rel(new, net8(x)) < 1e-4


def _agreement_bf16(m: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = m(x).argmax(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x).float().argmax(1)
    return float((low == ref).float().mean())


def test_bf16_argmax_agreement_random_weights() -> None:
    m = _randomise(build_fcn("fcn8s", width=0.25, num_classes=21), seed=4).eval()
    x = torch.randn(2, 3, 64, 64) * 50  # Caffe-scale inputs (mean-subtracted 0–255)
    assert _agreement_bf16(m, x) >= 0.985


def _toy_batch(g: torch.Generator, n: int = 4, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of 3 classes as coloured axis-aligned rectangles on a background, with noise."""
    colours = torch.tensor([[0.0, 0.0, 0.0], [60.0, -40.0, 0.0], [-50.0, 20.0, 70.0]])
    lab = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for c in (1, 2):
            y0, x0 = (int(v) for v in torch.randint(0, size - 16, (2,), generator=g))
            hh, ww = (int(v) for v in torch.randint(8, 16, (2,), generator=g))
            lab[i, y0:y0 + hh, x0:x0 + ww] = c
    img = colours[lab].permute(0, 3, 1, 2) + 10 * torch.randn(n, 3, size, size, generator=g)
    return img, lab


def test_bf16_argmax_agreement_trained_net() -> None:
    """A tiny FCN-8s trained for a few dozen steps to separate 3 classes: bf16 keeps ≥98.5% of its argmax."""
    torch.manual_seed(5)
    m = _randomise(build_fcn("fcn8s", width=0.0625, num_classes=3), seed=5)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(5)
    m.train()
    first = None
    for _ in range(40):
        x, y = _toy_batch(g)
        loss = F.cross_entropy(m(x), y)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    x, y = _toy_batch(g, n=4)
    with torch.no_grad():
        acc = float((m(x).argmax(1) == y).float().mean())
    assert float(loss.detach()) < first and acc > 0.6  # it did learn something
    assert _agreement_bf16(m, x) >= 0.985


def test_fastfcn_matches_model(padskip, net8: torch.nn.Module, native_bf16: bool) -> None:
    """The wrapper with its device defaults stays within the stated tolerances of the plain net."""
    x = torch.randn(1, 3, 70, 50)
    wrapped = fast.FastFCN(net8)
    with torch.inference_mode():
        ref, out = net8(x), wrapped(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    tol = 5e-2 if native_bf16 else 1e-4
    assert _rel(out, ref) < tol
    with torch.inference_mode():
        exact = padskip.PadSkipFCN(net8, amp=None, winograd=False, padskip=True)(x)
    assert _rel(exact, ref) < 2e-5


def test_device_choices(native_bf16: bool, monkeypatch) -> None:
    """What the host kind changes in a real FastFCN forward after inference_setup: the dtype the convs run
    in, the weights' memory layout, and whether NNPACK's Winograd kernel is called at all."""
    net = _randomise(build_fcn("fcn32s", width=0.5, num_classes=3), seed=7)  # conv2_2 on: ≥64 channels
    nnpack_inputs: list[torch.dtype] = []
    real_nnpack = torch._nnpack_spatial_convolution

    def spy(x, *args):
        nnpack_inputs.append(x.dtype)
        return real_nnpack(x, *args)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", spy)
    module_convs: list[torch.dtype] = []
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: module_convs.append(out.dtype))
    model = fast.inference_setup(net, compute.resolve_runtime("cpu"))
    with torch.inference_mode():
        out = fast.FastFCN(model)(torch.randn(1, 3, 16, 16))
    assert out.dtype == torch.float32 and out.shape == (1, 3, 16, 16)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    spatial = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1
               and m.weight.shape[-1] > 1]
    assert spatial
    if native_bf16:  # autocast to bf16, NHWC weights, oneDNN only
        assert module_convs and set(module_convs) == {torch.bfloat16}
        assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in spatial)
        assert nnpack_inputs == []
    else:  # fp32, NCHW, the wide 3×3 convs through NNPACK where this torch has it
        assert module_convs and set(module_convs) == {torch.float32}
        assert all(w.is_contiguous() for w in spatial)
        if torch._nnpack_available():
            assert nnpack_inputs and set(nnpack_inputs) == {torch.float32}


def test_bench_baseline_is_the_same_net(net8: torch.nn.Module, bench_module) -> None:
    mod = bench_module("baseline_fcn")
    base = mod.from_fcn(net8).eval()
    x = torch.randn(1, 3, 61, 44)
    with torch.no_grad():
        assert _rel(base(x), net8(x)) < 1e-6


@pytest.mark.parametrize("backbone", ["alexnet", "googlenet"])
def test_fastfcn_other_backbones(padskip, backbone: str, native_bf16: bool) -> None:
    """Trunks the skip does not cover (LRN, inception) run dense through the wrapper, same tolerance."""
    m = _randomise(build_fcn("fcn32s", backbone=backbone, width=0.25, num_classes=5), seed=6).eval()
    x = torch.randn(1, 3, 67, 50) * 50
    with torch.inference_mode():
        ref, out = m(x), fast.FastFCN(m)(x)
    assert not padskip.supports_padskip(m)
    with torch.inference_mode():
        assert torch.equal(padskip.PadSkipFCN(m, padskip=True)(x), out)  # no skip where unsupported
    tol = 5e-2 if native_bf16 else 1e-4
    assert _rel(out, ref) < tol
