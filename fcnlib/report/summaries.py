"""Small per-run files for versioning tools: `dvc metrics show` / `dvc exp show` read one JSON (each
dataset's headline net's validation mean IU and the run's source) and the run's DVCLive record (the lead net's
training, as DVCLive writes it), `dvc plots` overlays learning curves read from one long TSV per metric (a column
names the experiment).

The full metrics.json (per-class IU and accuracy, provenance) stays where the evaluate rule writes it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fcnlib.errors import ConfigError, DataError
from fcnlib.files.io import atomic_write_json, atomic_write_text, read_json, staged_dir
from fcnlib.progress.trackers import LiveMetrics
from fcnlib.report.figures import read_log, read_records
from fcnlib.runtime.extras import installed

HEADLINE = ("mean_iu", "pixel_acc", "mean_acc", "fw_iu", "geo_acc")


def _percent(value: Any, where: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise DataError(f"{where}: score {value!r} is not a fraction in [0, 1]; rerun the evaluate rule")
    return round(100.0 * v, 2)


def headline(metrics: Mapping[str, Any], where: str = "metrics.json") -> dict[str, float]:
    """The paper's numbers of one evaluation in percent: mean IU, pixel acc., mean acc., f.w. IU, and
    geometric accuracy for two-headed nets (SIFT Flow). Keys the evaluation lacks are left out."""
    out = {}
    for key in HEADLINE:
        value = _percent(metrics.get(key), f"{where}: {key}")
        if value is not None:
            out[key] = value
    if "mean_iu" not in out:
        raise DataError(f"{where}: no mean_iu; not an evaluation written by fcnlib.eval.evaluate")
    return out


def metrics_summary(evaluations: Mapping[str, str | os.PathLike], source: str) -> dict[str, Any]:
    """The run's `dvc metrics show` / `dvc exp show` file: the mean IU (%) of each evaluation given (the workflow
    gives each dataset's headline net on its validation split), one column each, and the config's `source`
    (`demo` runs say so on every row of `dvc metrics show`).

    `evaluations` maps a label (the experiment name) to its metrics.json. Only mean IU: the other numbers of
    each evaluation stay in its metrics.json and results/tables.md, so `dvc exp show` fits a screen.
    """
    return {"source": str(source),
            "mean_iu": {name: headline(read_json(path), str(path))["mean_iu"] for name, path in evaluations.items()}}


def curve_tables(logs: Mapping[str, str | os.PathLike]) -> tuple[str, str]:
    """Trainer logs → (loss TSV: iter, experiment, loss; validation TSV: iter, experiment, mean_iu, pixel_acc in
    percent). One long table per metric, so a plot colours by experiment and overlays them all."""
    loss_rows, val_rows = ["iter\texperiment\tloss"], ["iter\texperiment\tmean_iu\tpixel_acc"]
    for name, log_path in logs.items():
        loss, val = read_log(log_path)
        loss_rows += [f"{r['iter']}\t{name}\t{float(r['loss']):.6g}" for r in loss
                      if r.get("loss") is not None and math.isfinite(float(r["loss"]))]
        for r in val:
            v = r["val"]
            if v.get("mean_iu") is None:
                continue
            pa = _percent(v.get("pixel_acc"), f"{log_path}: val.pixel_acc")
            val_rows.append(f"{r['iter']}\t{name}\t{_percent(v['mean_iu'], f'{log_path}: val.mean_iu')}\t"
                            f"{'' if pa is None else pa}")
    return "\n".join(loss_rows) + "\n", "\n".join(val_rows) + "\n"


def write_summaries(evaluations: Mapping[str, str | os.PathLike], logs: Mapping[str, str | os.PathLike],
                    source: str, out_metrics: str | os.PathLike, out_loss: str | os.PathLike,
                    out_val: str | os.PathLike) -> None:
    """metrics_summary → `out_metrics` (JSON); curve_tables → `out_loss`, `out_val` (TSV)."""
    atomic_write_json(Path(out_metrics), metrics_summary(evaluations, source))
    loss, val = curve_tables(logs)
    atomic_write_text(Path(out_loss), loss)
    atomic_write_text(Path(out_val), val)


def write_live_record(log: str | os.PathLike, params: Mapping[str, Any], out_dir: str | os.PathLike) -> None:
    """The run's DVCLive record in `out_dir`: one training's log (the workflow gives the lead net's,
    fcnlib.pipeline.config.lead_experiment) replayed through DVCLive — metrics.json (the latest of each scalar
    and the step), plots/metrics/{train,val}/*.tsv, params.yaml (`params`) — built whole and swapped in.

    Every training's own DVCLive folder stays beside its weights; this one is what `dvc exp show` shows of the
    trainings: one net's handful of numbers (seven on PASCAL), so the table fits a screen however many nets
    the run trains.
    """
    if not installed("dvclive"):
        raise ConfigError(f"{out_dir}: DVCLive is not installed; pip install 'fcnlib[dvc]' and rerun")
    history = read_records(log)
    if not any("val" in r or "loss" in r for r in history):
        raise DataError(f"{log}: no loss or validation record; rerun the train rule")
    with staged_dir(out_dir) as tmp:
        live = LiveMetrics(tmp, params, history)
        live.close()
