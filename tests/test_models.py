"""FCN geometry, variants, heads, stats, preprocessing and model files (fcnlib.models)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from helpers_paths import need_shared

from fcnlib.errors import ConfigError, WeightsError
from fcnlib.files.io import read_image
from fcnlib.models import (
    CAFFE_VGG,
    DEPTH_LOG,
    HHA,
    TORCHVISION,
    Preprocessing,
    bilinear_kernel,
    build_fcn,
    build_late_fusion,
    freeze_except_score,
    load_model,
    net_stats,
    save_model,
)
from fcnlib.models.googlenet import GoogLeNet

pytestmark = pytest.mark.usefixtures("one_thread")  # the CPU is shared; one thread is fastest under load
W = 1 / 16  # small width: same geometry, ~1/256 of the FLOPs

VGG_CAFFE_KEYS = (
    [f"conv{b}_{i}" for b, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)] + ["fc6", "fc7"])
VARIANT_LAYERS = {
    "fcn32s": ["score_fr", "upscore"],
    "fcn16s": ["score_fr", "upscore2", "score_pool4", "upscore16"],
    "fcn8s": ["score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3", "upscore8"],
}


def _randomise_scores(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith("score"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


# ------------------------------------------------------------------------------------ preprocessing
def test_caffe_preprocessing_flips_to_bgr_and_subtracts_mean():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # R, G, B
    x = CAFFE_VGG.apply(img)
    assert x.dtype == torch.float32 and x.shape == (3, 2, 3)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), [30 - 104.00699, 20 - 116.66877, 10 - 122.67892], rtol=1e-6)


def test_torchvision_preprocessing_scales_and_normalises():
    img = np.full((1, 1, 3), 255, np.uint8)
    x = TORCHVISION.apply(img)[:, 0, 0].numpy()
    np.testing.assert_allclose(x, [(1 - .485) / .229, (1 - .456) / .224, (1 - .406) / .225], rtol=1e-5)


def test_hha_keeps_channel_order_and_depth_log():
    img = np.stack([np.full((2, 2), v, np.uint8) for v in (1, 2, 3)], -1)
    np.testing.assert_allclose(HHA.apply(img)[:, 0, 0].numpy(), np.array([1, 2, 3]) - np.array(HHA.mean),
                               rtol=1e-6)
    d = DEPTH_LOG.apply(np.array([[1000.0, 0.0]], np.float32))
    assert d.shape == (1, 1, 2)
    np.testing.assert_allclose(d[0, 0].numpy(), [np.log(1000) - 7.844, -7.844], rtol=1e-5)


def test_preprocessing_dict_round_trip_and_bad_input():
    for p in (CAFFE_VGG, TORCHVISION, DEPTH_LOG):
        assert Preprocessing.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="channel_order"):
        Preprocessing.from_dict({"channel_order": "GBR", "scale": 255, "mean": [0, 0, 0]})
    with pytest.raises(ConfigError, match="H×W×3"):
        CAFFE_VGG.apply(np.zeros((4, 4, 4), np.uint8))


def test_preprocessing_on_real_voc_image():
    path = need_shared("fcn_berkeleyvision/demo/image.jpg")
    img = read_image(path)
    x = CAFFE_VGG.apply(img)
    assert x.shape == (3, img.shape[0], img.shape[1]) == (3, 500, 334)
    np.testing.assert_allclose(x[0].numpy(), img[..., 2] - 104.00699, atol=1e-4)  # B first


# ------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("variant,offsets,kernel", [
    ("fcn32s", (19,), 64), ("fcn16s", (5, 27), 32), ("fcn8s", (5, 9, 31), 16), ("fcn8s-atonce", (5, 9, 31), 16)])
def test_vgg_crop_offsets_are_caffes(variant, offsets, kernel):
    m = build_fcn(variant, width=W)
    assert m.offsets == offsets and m.final_kernel == kernel


def test_alexnet_googlenet_offsets_and_only_32s():
    a = build_fcn("fcn32s", "alexnet", width=W)
    assert (a.final_kernel, a.offsets) == (63, (18,))  # the authors' FCN-AlexNet deconvolution
    g = build_fcn("fcn32s", "googlenet", width=W)
    assert g.offsets == (98,)
    for bb in ("alexnet", "googlenet"):
        with pytest.raises(ConfigError, match="fcn32s"):
            build_fcn("fcn16s", bb, width=W)


@pytest.mark.parametrize("variant", ["fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce"])
def test_output_size_equals_input_size_vgg(variant):
    m = build_fcn(variant, width=1 / 32).eval()
    with torch.no_grad():
        for h, w in [(1, 1), (1, 7), (3, 5), (17, 31), (33, 65), (97, 101)]:
            assert m(torch.randn(1, 3, h, w)).shape == (1, 21, h, w)


@pytest.mark.parametrize("backbone", ["alexnet", "googlenet"])
def test_output_size_equals_input_size_other_backbones(backbone):
    m = build_fcn("fcn32s", backbone, num_classes=5, width=1 / 32).eval()
    with torch.no_grad():
        for h, w in [(1, 1), (5, 3), (31, 47), (101, 77)]:
            assert m(torch.randn(1, 3, h, w)).shape == (1, 5, h, w)


def test_output_size_large_inputs():
    m = build_fcn("fcn8s", width=1 / 64).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 500, 375)).shape[-2:] == (500, 375)
        assert m(torch.randn(1, 3, 1000, 1000)).shape[-2:] == (1000, 1000)


# ------------------------------------------------------------------------------------ names & init
def test_width1_state_dict_keys_follow_caffe_names():
    with torch.device("meta"):
        models = {v: build_fcn(v) for v in VARIANT_LAYERS}
    for v, m in models.items():
        sd = m.state_dict()
        expect = [f"{n}.{p}" for n in VGG_CAFFE_KEYS for p in ("weight", "bias")]
        for n in VARIANT_LAYERS[v]:
            expect += [f"{n}.weight"] + ([f"{n}.bias"] if n.startswith("score") else [])
        assert sorted(sd) == sorted(expect)
        assert sd["fc6.weight"].shape == (4096, 512, 7, 7) and sd["fc7.weight"].shape == (4096, 4096, 1, 1)
        assert sd["conv1_1.weight"].shape == (64, 3, 3, 3) and sd["score_fr.weight"].shape == (21, 4096, 1, 1)
    assert models["fcn8s"].state_dict()["upscore8.weight"].shape == (21, 21, 16, 16)
    assert models["fcn8s"].state_dict()["score_pool3.weight"].shape == (21, 256, 1, 1)
    assert models["fcn32s"].state_dict()["upscore.weight"].shape == (21, 21, 64, 64)


def test_width_scales_channels_only():
    with torch.device("meta"):
        full = build_fcn("fcn8s").state_dict()
    small = build_fcn("fcn8s", width=0.25, in_channels=4).state_dict()
    assert list(small) == list(full)
    assert small["conv1_1.weight"].shape == (16, 4, 3, 3)
    assert small["fc6.weight"].shape == (1024, 128, 7, 7)
    assert small["upscore8.weight"].shape == full["upscore8.weight"].shape  # class dims unchanged


def test_score_zero_deconv_bilinear_and_final_frozen():
    m = build_fcn("fcn8s", width=W)
    for n in ("score_fr", "score_pool4", "score_pool3"):
        assert not getattr(m, n).weight.any() and not getattr(m, n).bias.any()
    for n in ("upscore2", "upscore_pool4", "upscore8"):
        d = getattr(m, n)
        assert d.bias is None
        k = d.weight.shape[-1]
        assert torch.equal(d.weight[3, 3], torch.from_numpy(bilinear_kernel(k)))
        assert not d.weight[3, 4].any()
    assert not m.upscore8.weight.requires_grad
    assert m.upscore2.weight.requires_grad and m.upscore_pool4.weight.requires_grad
    np.testing.assert_allclose(bilinear_kernel(4)[0], [0.0625, 0.1875, 0.1875, 0.0625])


def test_freeze_except_score():
    m = freeze_except_score(build_fcn("fcn32s", width=W))
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"score_fr.weight", "score_fr.bias"}


def test_atonce_scales_pool4_and_pool3():
    torch.manual_seed(0)
    plain, atonce = build_fcn("fcn8s", width=W).eval(), build_fcn("fcn8s-atonce", width=W).eval()
    _randomise_scores(plain)
    atonce.load_state_dict(plain.state_dict())
    with torch.no_grad():  # a 1×1 conv is linear: scaling its input = scaling its weight
        plain.score_pool4.weight.mul_(0.01)
        plain.score_pool3.weight.mul_(0.0001)
        x = torch.randn(1, 3, 40, 52)
        torch.testing.assert_close(atonce(x), plain(x), rtol=1e-5, atol=1e-6)
        plain.score_pool3.weight.div_(0.0001)
        assert not torch.allclose(atonce(x), plain(x), atol=1e-4)


def test_two_heads_siftflow():
    m = build_fcn("fcn16s", width=W, heads={"sem": 33, "geo": 3}).eval()
    keys = {k.split(".")[0] for k in m.state_dict()}
    assert {"score_fr_sem", "score_fr_geo", "upscore2_sem", "score_pool4_geo", "upscore16_sem"} <= keys
    assert "score_fr" not in keys
    _randomise_scores(m)
    with torch.no_grad():
        out = m(torch.randn(2, 3, 23, 29))
    assert set(out) == {"sem", "geo"}
    assert out["sem"].shape == (2, 33, 23, 29) and out["geo"].shape == (2, 3, 23, 29)
    with pytest.raises(ConfigError):
        build_fcn("fcn16s", heads={"sem": 0})


def test_late_fusion_sums_half_scores():
    torch.manual_seed(0)
    a, b = build_fcn("fcn32s", width=W).eval(), build_fcn("fcn32s", width=W).eval()
    _randomise_scores(a, 1)
    _randomise_scores(b, 2)
    f = build_late_fusion(a, b, split=3).eval()
    x = torch.randn(1, 6, 21, 19)
    with torch.no_grad():
        torch.testing.assert_close(f(x), 0.5 * a(x[:, :3]) + 0.5 * b(x[:, 3:]))


def test_bad_arguments_raise_config_error():
    for kw in ({"variant": "fcn4s"}, {"variant": "fcn8s", "backbone": "resnet"},
               {"variant": "fcn8s", "width": 0}, {"variant": "fcn8s", "num_classes": 0}):
        with pytest.raises(ConfigError):
            build_fcn(**kw)


# ------------------------------------------------------------------------------------ stats
def test_net_stats_match_table1():
    with torch.device("meta"):
        vgg, alex, goog = build_fcn("fcn8s"), build_fcn("fcn32s", "alexnet"), build_fcn("fcn32s", "googlenet")
        goog_cls = GoogLeNet(keep_avgpool=True)
    s = net_stats(vgg)
    assert s == {"params": 134_260_544, "receptive_field": 404, "max_stride": 32}
    s = net_stats(alex)
    assert round(s["params"] / 1e6) == 57 and s["receptive_field"] == 355 and s["max_stride"] == 32
    s = net_stats(goog)
    assert round(s["params"] / 1e6) == 6 and s["max_stride"] == 32
    assert s["receptive_field"] == 715  # average pool discarded (paper §4.1)
    assert net_stats(goog_cls)["receptive_field"] == 907  # Table 1: the classifier net, 7×7 avg pool kept


def test_net_stats_width_changes_params_not_geometry():
    s = net_stats(build_fcn("fcn32s", width=0.5))
    assert s["receptive_field"] == 404 and s["max_stride"] == 32 and 30e6 < s["params"] < 40e6


# ------------------------------------------------------------------------------------ model files
def test_save_load_round_trip(tmp_path):
    m = build_fcn("fcn8s", width=W, num_classes=5).eval()
    _randomise_scores(m)
    save_model(m, {"classes": list("abcde"), "modalities": ["rgb"],
                   "preprocessing": {"rgb": CAFFE_VGG.to_dict()}}, tmp_path / "w.pt")
    m2, meta = load_model(tmp_path / "w.pt")
    assert meta["arch"]["variant"] == "fcn8s" and meta["classes"] == list("abcde")
    assert not m2.training and not m2.upscore8.weight.requires_grad
    x = torch.randn(1, 3, 30, 41)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_save_load_late_fusion(tmp_path):
    a, b = build_fcn("fcn32s", width=W, num_classes=4), build_fcn("fcn32s", width=W, num_classes=4)
    _randomise_scores(a, 3)
    f = build_late_fusion(a, b).eval()
    save_model(f, {"modalities": ["rgb", "hha"]}, tmp_path / "f.pt")
    g, meta = load_model(tmp_path / "f.pt")
    assert meta["arch"]["fusion"] == "late" and meta["arch"]["weights"] == [0.5, 0.5]
    x = torch.randn(1, 6, 17, 18)
    with torch.no_grad():
        assert torch.equal(f(x), g(x))


def test_load_model_other_architecture_is_weights_error(tmp_path):
    m = build_fcn("fcn8s", width=W)
    save_model(m, {"arch": {**m.arch, "variant": "fcn16s"}}, tmp_path / "w.pt")
    with pytest.raises(WeightsError, match=r"w\.pt.*unexpected.*score_pool3"):
        load_model(tmp_path / "w.pt")
    save_model(m, {"arch": {**m.arch, "num_classes": 7}}, tmp_path / "c.pt")
    with pytest.raises(WeightsError, match=r"wrong shapes.*score_fr"):
        load_model(tmp_path / "c.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_executes_code_is_refused(tmp_path):
    evil = _Evil()
    evil.marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "meta": {"arch": evil}}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="refused"):
        load_model(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_missing_files(tmp_path):
    m = build_fcn("fcn32s", width=W)
    save_model(m, {}, tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"t\.pt"):
        load_model(tmp_path / "t.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "nope.pt")
