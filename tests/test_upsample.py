"""Frozen bilinear upsamplers run per class (C× fewer FLOPs) with the same numbers as the full C×C
transposed convolution; learned ones stay full C×C; the state-dict layout is the authors'."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fcnlib.models.fcn as fcn
from fcnlib.models import build_fcn

WIDTH = 0.0625


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """Counts the per-class path's calls."""
    n: list[int] = []
    orig = fcn.per_class_upsample

    def spy(*a):
        n.append(1)
        return orig(*a)

    monkeypatch.setattr(fcn, "per_class_upsample", spy)
    return n


def _full(model: nn.Module) -> None:
    """Force every Upsampler onto the plain C×C nn.ConvTranspose2d (the reference)."""
    for m in model.modules():
        if isinstance(m, fcn.Upsampler):
            m.per_class = False


@pytest.mark.parametrize("k,s", [(64, 32), (63, 32), (32, 16), (16, 8), (4, 2), (5, 3), (3, 3)])
def test_per_class_equals_full_transposed_conv(k, s):
    g = torch.Generator().manual_seed(k * 7 + s)
    c = 5
    kern = torch.rand(c, k, k, generator=g)
    w = torch.zeros(c, c, k, k)
    w[torch.arange(c), torch.arange(c)] = kern
    for shape in [(2, c, 7, 9), (1, c, 1, 1), (1, c, 3, 2)]:  # odd sizes, a single pixel
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        ref = F.conv_transpose2d(x, w.double(), stride=s)
        out = fcn.per_class_upsample(x, kern.double(), s)
        assert out.shape == ref.shape and out.dtype == torch.float64
        assert _rel(out, ref) < 1e-12, (k, s, shape)
        out32 = fcn.per_class_upsample(x.float(), kern, s)
        assert _rel(out32, ref) < 1e-6


@pytest.mark.parametrize("k,s", [(64, 32), (63, 32), (16, 8), (5, 3)])
def test_per_class_crop_equals_crop_of_full(k, s):
    g = torch.Generator().manual_seed(k + s)
    c = 3
    kern = torch.rand(c, k, k, generator=g, dtype=torch.float64)
    w = torch.zeros(c, c, k, k, dtype=torch.float64)
    w[torch.arange(c), torch.arange(c)] = kern
    x = torch.randn(2, c, 6, 5, generator=g, dtype=torch.float64)
    ref = F.conv_transpose2d(x, w, stride=s)
    H, W = ref.shape[-2:]
    for off, h, ww in [(0, H, W), (19, 37, 29), (s - 1, 1, 1), (s, 2 * s, s + 1), (5, H, W), (H - 3, 9, 9)]:
        out = fcn.per_class_upsample(x, kern, s, (off, h, ww))
        want = ref[:, :, off:off + h, off:off + ww]
        assert out.shape == want.shape, (off, h, ww)
        assert want.numel() == 0 or _rel(out, want) < 1e-12


@pytest.mark.parametrize("variant,backbone", [("fcn32s", "vgg16"), ("fcn16s", "vgg16"), ("fcn8s", "vgg16"),
                                              ("fcn8s-atonce", "vgg16"), ("fcn32s", "alexnet"),
                                              ("fcn32s", "googlenet")])
def test_frozen_net_equals_full_upsamplers(variant, backbone, calls):
    torch.manual_seed(0)
    m = build_fcn(variant, backbone, 21, WIDTH).eval()
    for n, p in m.named_parameters():
        p.requires_grad_(False)
        if n.startswith("score"):
            p.normal_()  # non-zero scores: the upsamplers see real maps
    x = torch.randn(1, 3, 61, 47)  # odd, non-square
    out = m(x)
    n_up = sum(isinstance(mod, fcn.Upsampler) for mod in m.modules())
    assert len(calls) == n_up == 1 + len(m.taps)  # every (bilinear, frozen) upsampler ran per class
    _full(m)
    ref = m(x)
    assert len(calls) == n_up  # the reference did not run per class
    assert out.shape == ref.shape == (1, 21, 61, 47)
    assert _rel(out, ref) < 1e-5


def test_state_dict_layout_is_the_authors(tmp_path):
    m = build_fcn("fcn8s", "vgg16", 21, WIDTH)
    sd = m.state_dict()
    assert sd["upscore2.weight"].shape == (21, 21, 4, 4) and sd["upscore_pool4.weight"].shape == (21, 21, 4, 4)
    assert sd["upscore8.weight"].shape == (21, 21, 16, 16)
    assert all(isinstance(getattr(m, n), nn.ConvTranspose2d) for n in ("upscore2", "upscore_pool4", "upscore8"))
    # a full C×C checkpoint (as Caffe/pytorch-fcn store it) loads into it, strictly
    m2 = build_fcn("fcn8s", "vgg16", 21, WIDTH)
    m2.load_state_dict(sd, strict=True)


def test_learned_upsampler_stays_full_and_gradients_unchanged(calls):
    torch.manual_seed(1)
    m = build_fcn("fcn16s", "vgg16", 4, WIDTH)
    assert m.upscore2.weight.requires_grad and not m.upscore16.weight.requires_grad
    x = torch.randn(3 * 4 * 5 * 6).view(3, 4, 5, 6).requires_grad_()
    y = m.upscore2(x)
    assert not calls  # learned: the full C×C convolution
    ref_w = m.upscore2.weight.detach().clone().requires_grad_()
    xr = x.detach().clone().requires_grad_()
    ref = F.conv_transpose2d(xr, ref_w, stride=2)
    gy = torch.randn_like(ref)
    y.backward(gy)
    ref.backward(gy)
    assert torch.equal(y, ref)
    assert torch.allclose(m.upscore2.weight.grad, ref_w.grad) and torch.allclose(x.grad, xr.grad)
    off = m.upscore2.weight.grad.clone()
    off[torch.arange(4), torch.arange(4)] = 0
    assert off.abs().sum() > 0  # it learns cross-class filters: a full C×C upsampler

    # the frozen final one: per class, and the gradient it passes back is the full conv's
    z = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    up = m.upscore16.double()
    out = up(z)
    assert calls
    zr = z.detach().clone().requires_grad_()
    ref = F.conv_transpose2d(zr, up.weight, stride=16)
    g = torch.randn_like(ref)
    out.backward(g)
    ref.backward(g)
    assert _rel(out, ref) < 1e-12 and _rel(z.grad, zr.grad) < 1e-12


def test_frozen_non_diagonal_weight_runs_full(calls):
    m = build_fcn("fcn32s", "vgg16", 3, WIDTH)
    up = m.upscore
    x = torch.randn(1, 3, 4, 4)
    up(x)
    assert len(calls) == 1
    with torch.no_grad():
        up.weight[0, 1, 3, 3] = 0.5  # in-place edit: the cached diagonal test must notice it
    out = up(x)
    assert len(calls) == 1
    assert torch.equal(out, F.conv_transpose2d(x, up.weight, stride=32))


def test_inference_mode_weights():
    with torch.inference_mode():
        m = build_fcn("fcn32s", "vgg16", 3, WIDTH)
        x = torch.randn(1, 3, 4, 4)
        assert torch.equal(m.upscore(x), fcn.per_class_upsample(x, m.upscore.weight[[0, 1, 2], [0, 1, 2]], 32))


def test_frozen_upsampler_is_fp32_under_bf16_autocast():
    m = build_fcn("fcn32s", "vgg16", 21, WIDTH)
    x = torch.randn(1, 21, 5, 6)
    ref = F.conv_transpose2d(x, m.upscore.weight, stride=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.upscore(x)
    assert out.dtype == torch.float32 and _rel(out, ref) < 1e-6
