"""What a training tells people while it runs, besides log.jsonl (the record every summary is built from):

* human lines in the rule's log (stderr under Snakemake): the set-up once (device, precision, recipe, data),
  then one line per validation with its mean IU, pixel accuracy, the last loss and the lr — what the field's
  trainers print, so `tail logs/train/<experiment>.log` answers "how is it doing";
* DVCLive files (`dvclive/` beside the weights: metrics.json, plots/metrics/{train,val}/*.tsv, params.yaml),
  which `dvc plots`, DVC's editor extensions and DVC Studio read. DVCLive is optional (`fcnlib[dvc]`): when
  it is not installed one line says so and training goes on.

DVCLive mirrors the JSONL log record by record; on resume the log is the checkpoint's copy, so the DVCLive
folder is rebuilt from it (replayed), never appended twice.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

PathLike = str | os.PathLike


def say(line: str) -> None:
    """One line in the rule's log, beside (not inside) a progress bar."""
    tqdm.write(line, file=sys.stderr)


def _pct(v: Any) -> str:
    return "n/a" if v is None or not math.isfinite(float(v)) else f"{100 * float(v):.2f}%"


def start_line(c: Mapping[str, Any], device: str, precision: str, n_train: int, n_val: int) -> str:
    """The run's set-up, once: what a reader needs to tell two trainings apart."""
    r = c["recipe"]
    keys = ("optimizer", "lr", "batch_size", "iter_size", "loss", "momentum", "weight_decay")
    recipe = ", ".join(f"{k} {r[k]}" for k in keys if k in r)
    init = c["init"].get("kind", "?") if isinstance(c["init"], Mapping) else c["init"]
    return (f"fcn train: {c['experiment']}: {c['iterations']} iterations on {device}, precision {precision} "
            f"(amp {c['amp']}); recipe {r.get('name', '?')}: {recipe}; init {init}; train {c['train_split']} "
            f"({n_train} images), validation {c['val_split'] or 'none'} ({n_val} images) every "
            f"{c.get('val_every') or r.get('val_every', '?')} iterations")


def val_line(experiment: str, it: int, n_iter: int, val: Mapping[str, Any], loss: float | None, lr: float) -> str:
    """One validation: mean IU first, as the paper reports it, then the other scores, the last loss, the lr."""
    extra = "".join(f", {k} {_pct(v)}" for k, v in val.items() if k.endswith("_pixel_acc"))
    loss_s = "n/a" if loss is None or not math.isfinite(loss) else f"{loss:.4g}"
    return (f"fcn train: {experiment} iter {it}/{n_iter}: validation mean IU {_pct(val.get('mean_iu'))}, "
            f"pixel acc {_pct(val.get('pixel_acc'))}, mean acc {_pct(val.get('mean_acc'))}, "
            f"f.w. IU {_pct(val.get('fw_iu'))}{extra}; loss {loss_s}, lr {lr:g}")


class LiveMetrics:
    """DVCLive mirror of the JSONL records: `train/loss`, `train/lr` at each log step, `val/<metric>` (in
    percent, as the tables) at each validation; metrics.json holds the latest of each."""

    def __init__(self, directory: PathLike | None, params: Mapping[str, Any], log_text: str = "") -> None:
        self.live = None
        if directory is None:
            return
        try:
            # an optional dependency (fcnlib[dvc]): imported only when a training asks for DVCLive files
            from dvclive import Live
        except ImportError:
            say("fcn train: dvclive not installed (pip install 'fcnlib[dvc]'): no DVCLive metrics")
            return
        # no dvc.yaml of its own (the pipeline's dvc.yaml declares what DVC shows), no git commits, no report
        self.live = Live(str(Path(directory)), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)
        self.live.log_params(dict(params))
        for line in log_text.splitlines():  # a resumed run: the checkpoint's records, then live ones
            if line.strip():
                self.write(json.loads(line), summary=False)
        if log_text:
            self.live.make_summary()

    def write(self, rec: Mapping[str, Any], summary: bool = True) -> None:
        if self.live is None or "iter" not in rec:
            return
        self.live.step = int(rec["iter"])
        if isinstance(rec.get("val"), Mapping):
            for k, v in rec["val"].items():
                if v is not None and math.isfinite(float(v)):
                    self.live.log_metric(f"val/{k}", round(100 * float(v), 4))
        elif rec.get("loss") is not None:
            if math.isfinite(float(rec["loss"])):
                self.live.log_metric("train/loss", float(rec["loss"]))
            if rec.get("lr") is not None:
                self.live.log_metric("train/lr", float(rec["lr"]))
        if summary:
            self.live.make_summary()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
            self.live = None
