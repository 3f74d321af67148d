"""The authors' released FCN caffemodels: conversion by the authors' layer names, the CLI, the report, the
Table 2 column, config checks and the demo's stand-ins."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcnlib.cli import main as fcn
from fcnlib.demo import make_demo, released_caffe_blobs
from fcnlib.errors import ConfigError, WeightsError
from fcnlib.eval.released import convert
from fcnlib.facts import released
from fcnlib.models import build_fcn, load_model
from fcnlib.models.caffe import read_caffemodel, write_caffemodel
from fcnlib.pipeline import config as fcncfg
from fcnlib.report.released import build_report, render_report, write_report
from fcnlib.report.tables import build_tables, render_markdown

W = 0.0625
# voc-fcn8s/net.py of the authors (fcn.berkeleyvision.org), every layer with blobs, typed here on purpose:
# the test must not derive the names from our own model.
VOC_FCN8S_LAYERS = [
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3",
    "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7", "score_fr", "upscore2", "score_pool4", "upscore_pool4",
    "score_pool3", "upscore8",
]
NO_BIAS = {"upscore2", "upscore_pool4", "upscore8"}


def _random_fcn8s(seed: int = 0) -> torch.nn.Module:
    """Our FCN-8s with every tensor random (score layers and upsamplers too, so a swapped layer shows)."""
    torch.manual_seed(seed)
    net = build_fcn("fcn8s", num_classes=21, width=W)
    with torch.no_grad():
        for v in net.state_dict().values():
            fan = max(1, v[0].numel()) if v.dim() > 1 else 1
            v.copy_(torch.randn_like(v) * (2.0 / fan) ** 0.5)
    return net.eval()


def _authors_blobs(net: torch.nn.Module) -> dict[str, list[np.ndarray]]:
    out = {}
    for name in VOC_FCN8S_LAYERS:
        mod = getattr(net, name)
        blobs = [mod.weight.detach().numpy().copy()]
        if name not in NO_BIAS:
            blobs.append(mod.bias.detach().numpy().copy())
        out[name] = blobs
    return out


@pytest.mark.parametrize("v1", [False, True], ids=["layer", "v1-layers"])
def test_voc_fcn8s_caffemodel_reproduces_our_logits_exactly(tmp_path, v1):
    net = _random_fcn8s()
    src = tmp_path / "fcn8s-heavy-pascal.caffemodel"
    write_caffemodel(src, _authors_blobs(net), v1=v1, packed=not v1)
    out = convert(src, tmp_path / "fcn8s.pt", "voc-fcn8s", width=W)
    conv, meta = load_model(out)
    x = torch.randn(1, 3, 37, 53)  # odd sizes exercise the crops
    with torch.no_grad():
        assert torch.equal(conv(x), net(x))
    assert meta["arch"]["variant"] == "fcn8s" and meta["modalities"] == ["rgb"]
    assert meta["preprocessing"]["rgb"]["channel_order"] == "BGR"
    assert meta["preprocessing"]["rgb"]["mean"] == pytest.approx([104.00699, 116.66877, 122.67892])
    assert len(meta["classes"]) == 21 and meta["released"] == "voc-fcn8s"


def test_demo_standin_has_the_authors_names_and_shapes():
    blobs = released_caffe_blobs("voc-fcn8s", W)
    assert list(blobs) == VOC_FCN8S_LAYERS
    ours = _random_fcn8s().state_dict()
    for name, bl in blobs.items():
        assert bl[0].shape == tuple(ours[f"{name}.weight"].shape), name
        assert len(bl) == (1 if name in NO_BIAS else 2), name
    atonce = released_caffe_blobs("voc-fcn8s-atonce", W)
    assert atonce["scale_pool4"][0].tolist() == pytest.approx([0.01])
    assert atonce["scale_pool3"][0].tolist() == pytest.approx([0.0001])
    assert atonce["upscore8"][0].shape == (21, 21, 16, 16)
    alex = released_caffe_blobs("voc-fcn-alexnet", W)
    assert list(alex) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "score_fr", "upscore"]
    assert alex["upscore"][0].shape[-1] == 63 and alex["fc6"][0].shape[-1] == 6
    sift = released_caffe_blobs("siftflow-fcn16s", W)
    assert {"score_fr_sem", "upscore2_sem", "score_pool4_sem", "upscore16_sem", "score_fr_geo",
            "upscore16_geo"} <= set(sift)
    assert sift["score_fr_geo"][0].shape[0] == 3 and sift["score_fr_sem"][0].shape[0] == 33
    nyud = released_caffe_blobs("nyud-fcn32s-color-hha", W)
    assert {"conv1_1color", "fc7hha", "score_frcolor", "score_frhha", "upscore"} <= set(nyud)
    assert "upscorecolor" not in nyud and nyud["upscore"][0].shape == (40, 40, 64, 64)


@pytest.mark.slow  # > 10 s: multi-process, a real Snakemake or a full demo part
def test_every_released_standin_converts_and_runs(tmp_path):
    for name, m in released.MODELS.items():
        src = tmp_path / m.caffemodel
        write_caffemodel(src, released_caffe_blobs(name, W))
        model, meta = load_model(convert(src, tmp_path / f"{name}.pt", name, width=W))
        x = torch.randn(1, 3 * len(m.modalities), 33, 41)
        with torch.no_grad():
            y = model(x)
        outs = y if isinstance(y, dict) else {"": y}
        for o in outs.values():
            assert o.shape[-2:] == (33, 41) and torch.isfinite(o).all(), name
        assert set(meta["preprocessing"]) == set(m.modalities), name


def test_color_hha_is_the_authors_fused_then_upsampled_net(tmp_path):
    """Caffe: upscore(0.5·score_frcolor + 0.5·score_frhha), cropped at 19; ours: each tower upsampled."""
    blobs = released_caffe_blobs("nyud-fcn32s-color-hha", W, seed=3)
    for k in ("score_frcolor", "score_frhha"):
        blobs[k] = [b * 10 for b in blobs[k]]
    src = tmp_path / "nyud-fcn32s-color-hha-heavy.caffemodel"
    write_caffemodel(src, blobs)
    model, meta = load_model(convert(src, tmp_path / "c.pt", "nyud-fcn32s-color-hha", width=W))
    assert meta["modalities"] == ["rgb", "hha"]
    assert meta["preprocessing"]["rgb"]["mean"] == pytest.approx([116.190, 97.203, 92.318])
    assert meta["preprocessing"]["hha"]["mean"] == pytest.approx([132.431, 94.076, 118.477])
    x = torch.randn(1, 6, 45, 50)
    with torch.no_grad():
        ours = model(x)
        scores = []
        for net, part in ((model.net_a, x[:, :3]), (model.net_b, x[:, 3:])):
            h = part
            for _, layer in net.trunk():
                h = layer(h)
            scores.append(net.score_fr(h))
        fused = 0.5 * scores[0] + 0.5 * scores[1]
        up = F.conv_transpose2d(fused, torch.from_numpy(blobs["upscore"][0]), stride=32)
        ref = up[:, :, 19:19 + 45, 19:19 + 50]
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(model.net_a.upscore.weight, model.net_b.upscore.weight)


def test_wrong_files_are_refused(tmp_path):
    net = _random_fcn8s()
    good = _authors_blobs(net)
    missing = {k: v for k, v in good.items() if k != "score_pool3"}
    write_caffemodel(tmp_path / "a.caffemodel", missing)
    with pytest.raises(WeightsError, match="score_pool3"):
        convert(tmp_path / "a.caffemodel", tmp_path / "a.pt", "voc-fcn8s", width=W)
    write_caffemodel(tmp_path / "b.caffemodel", good)
    with pytest.raises(WeightsError, match="wrong shapes"):  # the file is at W, not at width 1
        convert(tmp_path / "b.caffemodel", tmp_path / "b.pt", "voc-fcn8s", width=2 * W)
    write_caffemodel(tmp_path / "c.caffemodel", {**good, "score_extra": good["score_fr"]})
    with pytest.raises(WeightsError, match="score_extra"):
        convert(tmp_path / "c.caffemodel", tmp_path / "c.pt", "voc-fcn8s", width=W)
    atonce = released_caffe_blobs("voc-fcn8s-atonce", W)
    atonce["scale_pool4"] = [np.array([1.0], np.float32)]
    write_caffemodel(tmp_path / "d.caffemodel", atonce)
    with pytest.raises(WeightsError, match="scale_pool4"):
        convert(tmp_path / "d.caffemodel", tmp_path / "d.pt", "voc-fcn8s-atonce", width=W)
    assert not any(tmp_path.glob("*.pt"))


def test_cli_round_trip(tmp_path, capsys):
    net = _random_fcn8s(1)
    src = tmp_path / "fcn8s-heavy-pascal.caffemodel"
    write_caffemodel(src, _authors_blobs(net))
    assert fcn(["convert-weights", str(src), "-o", str(tmp_path / "auto.pt"), "--width", str(W)]) == 0
    assert "released voc-fcn8s" in capsys.readouterr().out
    renamed = tmp_path / "mine.caffemodel"
    renamed.write_bytes(src.read_bytes())
    assert fcn(["convert-weights", str(renamed), "-o", str(tmp_path / "x.pt"), "--width", str(W)]) == 2
    assert "--released" in capsys.readouterr().err
    assert fcn(["convert-weights", str(renamed), "-o", str(tmp_path / "named.pt"), "--width", str(W),
                "--released", "voc-fcn8s"]) == 0
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        ref = net(x)
        for f in ("auto.pt", "named.pt"):
            assert torch.equal(load_model(tmp_path / f)[0](x), ref)
    # the blobs written back are the ones read: the file format and the conversion agree
    assert set(read_caffemodel(src)) == set(VOC_FCN8S_LAYERS)


def _metrics(iu: float, source: str = "demo", geo: float | None = None) -> dict:
    m = {"pixel_acc": 0.9, "mean_acc": 0.75, "mean_iu": iu, "fw_iu": 0.83, "n_images": 736,
         "split": "seg11valid", "dataset": "pascal", "dataset_source": source, "weights_sha256": "ab"}
    if geo is not None:
        m["geo_acc"] = geo
    return m


def test_report_sets_ours_beside_the_readme(tmp_path):
    recs = [{"name": "voc-fcn8s", "metrics": _metrics(0.6551, "real")},
            {"name": "siftflow-fcn16s", "metrics": {**_metrics(0.39, "real", geo=0.94), "split": "test",
                                                    "dataset": "siftflow"}}]
    data = write_report(recs, {"config": "paper", "source": "real", "width": 1.0},
                                 tmp_path / "r.md", tmp_path / "r.json")
    row = data["rows"][0]
    assert row["readme_mean_iu"] == 65.51 and row["ours"]["mean_iu"] == pytest.approx(65.51)
    assert row["delta_vs_readme"] == pytest.approx(0.0) and row["paper_mean_iu"] == 62.7
    assert data["rows"][1]["ours"]["geo_acc"] == pytest.approx(94.0) and data["rows"][1]["readme_mean_iu"] is None
    md = (tmp_path / "r.md").read_text()
    assert "| voc-fcn8s | fcn8s-heavy-pascal.caffemodel | pascal/seg11valid (736) |" in md
    assert "65.51" in md and "DEMO" not in md
    assert json.loads((tmp_path / "r.json").read_text()) == data
    demo = build_report([{"name": "voc-fcn8s", "metrics": _metrics(0.1)}], {"source": "demo"})
    assert "DEMO" in render_report(demo)
    with pytest.raises(ConfigError, match="DEMO"):
        build_report([{"name": "voc-fcn8s", "metrics": _metrics(0.1)}], {"source": "real"})


def test_table2_released_column_is_our_score():
    header = {"config": "t", "source": "demo", "width": W}
    rel = [{"table": "table2", "row": "FCN-8s", "name": "voc-fcn8s", "metrics": _metrics(0.1234)}]
    t2 = build_tables([], header, released=rel)["tables"]["table2"]["rows"]
    row = next(r for r in t2 if r["row"] == "FCN-8s")
    assert row["ours"]["released_mean_iu"] == pytest.approx(12.34) and row["paper"]["released_mean_iu"] == 65.51
    other = next(r for r in t2 if r["row"] == "FCN-16s")
    assert other["ours"]["released_mean_iu"] is None
    md = render_markdown(build_tables([], header, released=rel))
    assert "12.34 / 65.51" in md
    with pytest.raises(ConfigError, match="released"):
        build_tables([], header, released=[{**rel[0], "table": "table4", "row": "FCN-32s RGB"}])


def test_config_checks_released_entries():
    cfg = fcncfg.load_yaml("config/config.yaml")
    assert set(cfg["released"]) == set(released.MODELS)
    for name, spec in cfg["released"].items():
        src = cfg["sources"][spec["source"]]
        assert src["filename"] == released.MODELS[name].caffemodel
        assert src["urls"] == [f"http://dl.caffe.berkeleyvision.org/{src['filename']}"]
    fcncfg.validate_config(cfg)
    bad = json.loads(json.dumps(cfg))
    bad["released"]["voc-fcn9s"] = {"source": "released_voc_fcn8s"}
    with pytest.raises(ConfigError, match="released.voc-fcn9s"):
        fcncfg.validate_config(bad)
    bad = json.loads(json.dumps(cfg))
    bad["released"]["voc-fcn8s"] = {"source": "nowhere"}
    with pytest.raises(ConfigError, match="released.voc-fcn8s.source"):
        fcncfg.validate_config(bad)
    entries = {e["name"]: e for e in released.entries(cfg)}
    assert entries["voc-fcn8s"]["split"] == "seg11valid" and entries["nyud-fcn32s-color-hha"]["split"] == "test"
    assert entries["pascalcontext-fcn8s"]["split"] == "val" and entries["voc-fcn8s"]["table2_row"] == "FCN-8s"


def test_demo_writes_the_requested_standins(tmp_path):
    man = make_demo(tmp_path, n_train=2, n_val=1, image_size=(16, 20), parts=("released",),
                    released=["voc-fcn8s", "siftflow-fcn16s"])
    assert set(man) == {"fcn8s-heavy-pascal.caffemodel", "siftflow-fcn16s-heavy.caffemodel"}
    assert list(read_caffemodel(tmp_path / "fcn8s-heavy-pascal.caffemodel")) == VOC_FCN8S_LAYERS
    with pytest.raises(ConfigError, match="voc-fcn9s"):
        make_demo(tmp_path / "x", parts=("released",), released=["voc-fcn9s"])


@pytest.mark.parametrize("name", ["voc-fcn8s", "nyud-fcn32s-color-hha", "siftflow-fcn16s", "voc-fcn-alexnet"])
def test_released_width_is_read_from_the_blobs(tmp_path, name, capsys):
    src = tmp_path / released.MODELS[name].caffemodel
    write_caffemodel(src, released_caffe_blobs(name, W))
    assert fcn(["convert-weights", str(src), "-o", str(tmp_path / "auto.pt")]) == 0  # no --width
    model, meta = load_model(tmp_path / "auto.pt")
    arch = meta["arch"]["members"][0] if meta["arch"].get("fusion") else meta["arch"]
    assert arch["width"] == W
    given, given_meta = load_model(convert(src, tmp_path / "given.pt", name, width=W, data_source="demo"))
    assert all(torch.equal(v, given.state_dict()[k]) for k, v in model.state_dict().items())
    assert given_meta.is_demo and not meta.is_demo  # a demo stand-in says so (fcn segment warns)
