"""evaluate(): a tiny real FCN saved to disk, scored on a tiny dataset.json in the real layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers_eval import CLASSES, conv_output_dtypes, labels_of, make_dataset, save_tiny
from PIL import Image

from fcnlib.errors import ConfigError, DataError
from fcnlib.eval import evaluate as ev
from fcnlib.eval.metrics import ConfusionMatrix
from fcnlib.models import build_fcn
from fcnlib.runtime import compute


@pytest.fixture(autouse=True, params=[False, True], ids=["fp32-host", "bf16-host"])
def native_bf16(request, monkeypatch) -> bool:
    """evaluation runs through fcnlib.runtime.fast, whose precision follows the CPU: force each kind of CPU's choice
    (fp32 + Winograd, or bf16 autocast + channels_last) so the results checked hold for both on any host."""
    monkeypatch.setattr(compute, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def test_zero_init_net_scores_as_all_background(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    w = tmp_path / "w.pt"
    save_tiny(w)
    preds_dir = tmp_path / "preds"
    r = ev.evaluate(w, ds, "val", device="cpu", progress=False, predictions_dir=preds_dir)
    # Independent expectation: predicting 0 everywhere → pixel acc = share of class-0 pixels, IU_0 the same,
    # IU of the other classes 0 (present in GT, never predicted) → mean IU = share/3.
    labs = np.concatenate([x.ravel() for x in labels_of(ds)])
    valid = labs != 255
    share = float(np.mean(labs[valid] == 0))
    assert r["n_images"] == 3 and r["pixels"] == int(valid.sum())
    assert r["pixel_acc"] == pytest.approx(share)
    assert r["per_class_iu"] == {"background": pytest.approx(share), "thing": 0.0, "stuff": 0.0}
    assert r["mean_iu"] == pytest.approx(share / 3)
    assert r["mean_acc"] == pytest.approx(1 / 3)
    assert r["split"] == "val" and r["dataset"] == "tiny" and r["dataset_source"] == "demo"
    assert r["config_hash"] == "abc123"
    assert r["weights_sha256"] == ev.sha256_file(w) and len(r["weights_sha256"]) == 64
    assert r["device"] == ev.device_name("cpu") and "threads" in r["device"]
    # predicted PNGs: same size as each image, all zeros
    outs = sorted(preds_dir.glob("*.png"))
    assert [p.stem for p in outs] == ["img_000", "img_001", "img_002"]
    for p, lab in zip(outs, labels_of(ds), strict=True):
        a = np.asarray(Image.open(p))
        assert Image.open(p).mode == "P" and a.shape == lab.shape and not a.any()


def test_biased_net_matches_confusion_matrix_and_file_is_json(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    w = tmp_path / "w.pt"
    save_tiny(w, variant="fcn8s", winner=2)
    out = tmp_path / "m" / "metrics.json"
    r = ev.evaluate_file(w, ds, "val", out, device="cpu", progress=False, max_images=2, config_hash="cfg")
    cm = ConfusionMatrix(3)
    for lab in labels_of(ds, n=2):
        cm.update(lab, np.full(lab.shape, 2))
    s = cm.scores()
    assert r["n_images"] == 2 and r["config_hash"] == "cfg"
    assert r["mean_iu"] == pytest.approx(s["mean_iu"]) and r["fw_iu"] == pytest.approx(s["fw_iu"])
    assert r["per_class_iu"]["stuff"] == pytest.approx(s["per_class_iu"][2])
    assert r["per_class_iu"]["stuff"] > 0 and r["per_class_iu"]["background"] == 0.0

    def no_nan(tok):
        raise AssertionError(f"metrics.json holds {tok}; it must be strict JSON")

    on_disk = json.loads(out.read_text(), parse_constant=no_nan)
    assert on_disk["mean_iu"] == pytest.approx(r["mean_iu"])
    assert not list(out.parent.glob(".*.tmp"))


def test_two_headed_net_reports_geo(tmp_path):
    heads = {"sem": 3, "geo": 4}
    ds = make_dataset(tmp_path / "ds", n=2, heads=heads)
    w = tmp_path / "w.pt"
    save_tiny(w, variant="fcn16s", heads=heads)
    r = ev.evaluate(w, ds, "val", device="cpu", progress=False)
    geo = np.concatenate([x.ravel() for x in labels_of(ds, "geo", 2)])
    share0 = float(np.mean(geo[geo != 255] == 0))
    assert r["geo_acc"] == pytest.approx(share0) and r["geo"]["pixel_acc"] == r["geo_acc"]
    assert set(r["geo"]["per_class_iu"]) == {"geo0", "geo1", "geo2", "geo3"}
    assert "mean_iu" in r and set(r["per_class_iu"]) == set(CLASSES)


def test_errors_are_clear(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    w = tmp_path / "w.pt"
    save_tiny(w)
    with pytest.raises(DataError, match="no split 'test'"):
        ev.evaluate(w, ds, "test", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="device"):
        compute.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            compute.resolve_device("cuda")
    assert compute.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_time_forward_reports_median_and_device(native_bf16, monkeypatch):
    import fcnlib.models.fcn as fcn

    calls = []
    orig = fcn.per_class_upsample
    monkeypatch.setattr(fcn, "per_class_upsample", lambda *a: calls.append(1) or orig(*a))
    model = build_fcn("fcn32s", "vgg16", num_classes=3, width=0.0625)
    t = ev.time_forward(model, size=32, runs=3, warmup=1, device="cpu")
    assert t["runs"] == 3 and t["size"] == 32 and len(t["times_ms"]) == 3
    assert t["median_ms"] == pytest.approx(sorted(t["times_ms"])[1], abs=1e-3) and t["median_ms"] > 0
    assert "threads" in t["device"]
    assert not math.isnan(t["median_ms"])
    # the net's own fast path, its dtype recorded; the frozen bilinear upsampler ran per class every time
    assert t["fast_path"] and t["dtype"] == ("bfloat16" if native_bf16 else "float32")
    assert t["channels_last"] == native_bf16 and len(calls) == 4
    plain = ev.time_forward(model, size=32, runs=1, warmup=0, device="cpu", fast_path=False)
    assert plain["dtype"] == "float32" and not plain["fast_path"]


def test_fig4_from_weights_picks_images_where_nets_differ(tmp_path):
    from fcnlib.report.figures import fig4_from_weights

    ds = make_dataset(tmp_path / "ds", n=2)
    paths = {}
    for name, winner in (("FCN-32s", None), ("FCN-16s", None), ("FCN-8s", 1)):
        paths[name] = tmp_path / f"{name}.pt"
        save_tiny(paths[name], variant=name.lower().replace("-", ""), winner=winner)
    out = fig4_from_weights(paths, ds, "val", 1, tmp_path / "fig4.png", device="cpu")
    with Image.open(out) as im:  # one row of five panels
        assert im.format == "PNG" and im.width > 3 * im.height


@pytest.mark.parametrize(("precision", "dtype", "name"), [("fp32", torch.float32, "float32"),
                                                          ("bf16", torch.bfloat16, "bfloat16")])
def test_evaluation_computes_in_the_configured_precision(tmp_path, native_bf16, precision, dtype, name):
    """`amp: fp32` scores in fp32 even where the host's auto choice is bf16 (both hosts forced by the fixture);
    a forced bf16 runs bf16 convolutions on either host."""
    ds = make_dataset(tmp_path / "ds")
    w = tmp_path / "w.pt"
    save_tiny(w)
    result = {}
    dtypes = conv_output_dtypes(lambda: result.update(ev.evaluate(w, ds, "val", device="cpu", precision=precision,
                                                                   progress=False)))
    assert dtypes == {dtype}
    assert result["dtype"] == name


def test_evaluation_auto_precision_follows_the_host(tmp_path, native_bf16):
    ds = make_dataset(tmp_path / "ds")
    w = tmp_path / "w.pt"
    save_tiny(w)
    result = {}
    dtypes = conv_output_dtypes(lambda: result.update(ev.evaluate(w, ds, "val", device="cpu", progress=False)))
    assert dtypes == {torch.bfloat16 if native_bf16 else torch.float32}
    assert result["dtype"] == ("bfloat16" if native_bf16 else "float32")
