"""Per-run files for DVC: validation mean IU per headline net in one JSON, learning curves as long TSVs."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from fcnlib.errors import DataError, FcnError
from fcnlib.report.summaries import curve_tables, headline, metrics_summary, write_live_record, write_summaries
from fcnlib.runtime.extras import installed


def _metrics(**extra) -> dict:
    m = {"pixel_acc": 0.9012345, "mean_acc": 0.755, "mean_iu": 0.6219, "fw_iu": 0.83, "per_class_iu": {"a": 0.1},
         "per_class_acc": {"a": 0.2}, "n_images": 736, "split": "seg11valid", "weights_sha256": "ab"}
    m.update(extra)
    return m


def test_headline_is_five_numbers_in_percent():
    assert headline(_metrics()) == {"mean_iu": 62.19, "pixel_acc": 90.12, "mean_acc": 75.5, "fw_iu": 83.0}
    assert headline(_metrics(geo_acc=0.941))["geo_acc"] == 94.1
    assert headline(_metrics(mean_acc=None)).keys() == {"mean_iu", "pixel_acc", "fw_iu"}  # a NaN stays out
    with pytest.raises(DataError, match="m.json: mean_iu"):
        headline(_metrics(mean_iu=float("nan")), "m.json")
    with pytest.raises(DataError, match="no mean_iu"):
        headline({"pixel_acc": 0.5})


def test_curves_and_files(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [{"iter": 2, "loss": 3.5, "time": 0.1, "lr": 1e-3}, {"iter": 4, "loss": 2.25, "time": 0.2, "lr": 1e-3},
             {"iter": 4, "time": 0.3, "val": {"mean_iu": 0.5, "pixel_acc": 0.75, "mean_acc": 0.6, "fw_iu": 0.7}}]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"iter\": 6, \"lo")  # killed mid-line
    log2 = tmp_path / "log2.jsonl"
    log2.write_text(json.dumps({"iter": 3, "loss": 1.0, "time": 0.1, "lr": 1e-3}) + "\n")
    loss, val = curve_tables({"a": log, "b": log2})
    # one long table per metric: every experiment's curve in it, named in a column (one plot overlays them)
    assert loss == "iter\texperiment\tloss\n2\ta\t3.5\n4\ta\t2.25\n3\tb\t1\n"
    assert val == "iter\texperiment\tmean_iu\tpixel_acc\n4\ta\t50.0\t75.0\n"
    src = tmp_path / "metrics.json"
    src.write_text(json.dumps(_metrics()))
    outs = (tmp_path / "m.json", tmp_path / "c" / "l.tsv", tmp_path / "c" / "v.tsv")
    write_summaries({"voc-fcn8s": src, "voc-fcn8s@val12": src}, {"a": log, "b": log2}, "demo", *outs)
    assert json.loads(outs[0].read_text()) == {"source": "demo", "mean_iu": {"voc-fcn8s": 62.19,
                                                                             "voc-fcn8s@val12": 62.19}}
    assert outs[1].read_text() == loss and outs[2].read_text() == val


def test_metrics_summary_refuses_a_bad_score(tmp_path):
    src = tmp_path / "metrics.json"
    src.write_text(json.dumps(_metrics(mean_iu=1.7)))
    with pytest.raises(DataError, match="metrics.json: mean_iu.*not a fraction"):
        metrics_summary({"x": src}, "real")


def _log(path, lines) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


LOG = [{"iter": 2, "loss": 3.5, "time": 0.1, "lr": 1e-3}, {"iter": 4, "loss": 2.25, "time": 0.2, "lr": 5e-4},
       {"iter": 4, "time": 0.3, "val": {"mean_iu": 0.5, "pixel_acc": 0.75, "mean_acc": 0.6, "fw_iu": 0.7}},
       {"iter": 6, "loss": 2.0, "time": 0.4, "lr": 5e-4}]


def test_live_record_is_the_training_replayed(tmp_path):
    """The run's DVCLive record: DVCLive's own files, the log's records in order, the params given."""
    pytest.importorskip("dvclive", reason="dvclive is not installed (pip install 'fcnlib[dvc]')")
    log, out = tmp_path / "log.jsonl", tmp_path / "results" / "dvclive"
    _log(log, LOG)
    write_live_record(log, {"experiment": "voc-fcn8s", "source": "demo"}, out)
    assert json.loads((out / "metrics.json").read_text()) == {
        "step": 6, "train": {"loss": 2.0, "lr": 5e-4},
        "val": {"mean_iu": 50.0, "pixel_acc": 75.0, "mean_acc": 60.0, "fw_iu": 70.0}}
    assert (out / "plots/metrics/train/loss.tsv").read_text().split() == ["step", "loss", "2", "3.5", "4", "2.25",
                                                                            "6", "2.0"]
    assert (out / "plots/metrics/val/mean_iu.tsv").read_text().split() == ["step", "mean_iu", "4", "50.0"]
    assert yaml.safe_load((out / "params.yaml").read_text()) == {"experiment": "voc-fcn8s", "source": "demo"}
    assert not (out / "dvc.yaml").exists() and not (out / "report.html").exists()
    # a rerun replaces the whole folder: nothing of an earlier, longer log survives
    (out / "plots/metrics/val/geo_acc.tsv").write_text("step\tgeo_acc\n9\t1.0\n")
    _log(log, LOG[:2])
    write_live_record(log, {"experiment": "voc-fcn8s"}, out)
    assert json.loads((out / "metrics.json").read_text()) == {"step": 4, "train": {"loss": 2.25, "lr": 5e-4}}
    assert not (out / "plots/metrics/val").exists()
    assert not [p for p in tmp_path.joinpath("results").iterdir() if p.name != "dvclive"]  # no staging left


def test_live_record_refuses_an_empty_log_and_keeps_the_old_record(tmp_path):
    pytest.importorskip("dvclive", reason="dvclive is not installed (pip install 'fcnlib[dvc]')")
    log, out = tmp_path / "log.jsonl", tmp_path / "dvclive"
    _log(log, LOG)
    write_live_record(log, {}, out)
    before = (out / "metrics.json").read_text()
    _log(log, [{"iter": 0, "time": 0.0}])
    with pytest.raises(DataError, match=r"log.jsonl: no loss or validation record; rerun the train rule"):
        write_live_record(log, {}, out)
    assert (out / "metrics.json").read_text() == before


def test_live_record_without_dvclive_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dvclive", None)  # import blocked, as if not installed
    assert not installed("dvclive")
    _log(tmp_path / "log.jsonl", LOG)
    with pytest.raises(FcnError, match=r"dvclive: DVCLive is not installed; pip install 'fcnlib\[dvc\]'"):
        write_live_record(tmp_path / "log.jsonl", {}, tmp_path / "dvclive")
    assert not (tmp_path / "dvclive").exists()


def test_installed_finds_without_importing(monkeypatch):
    monkeypatch.delitem(sys.modules, "json", raising=False)
    assert installed("json") and "json" not in sys.modules
    assert not installed("no_such_module_fcn") and not installed("no_such_package_fcn.sub")
