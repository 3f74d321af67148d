"""The loggers the field's tools read, mirroring a trainer's JSONL log record by record:

* DVCLive files (metrics.json, plots/metrics/{train,val}/*.tsv, params.yaml), which `dvc exp show`, `dvc plots`,
  DVC's editor extensions and DVC Studio read. Optional (`fcnlib[dvc]`): without it one line says so and the
  work goes on;
* TensorBoard event files (`fcnlib[tensorboard]`): the same scalars under the same names, a set-up text.

A resumed training's log is the checkpoint's copy, so their files are rebuilt from it (replayed), never
appended twice; a whole log replayed is the run's DVCLive record (fcnlib.report.summaries). Torch-free at
import (TensorBoard's writer is imported when asked for), so a report step does not load the trainer.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fcnlib.errors import DiskError
from fcnlib.progress import say

PathLike = str | os.PathLike


def log_records(text: str) -> list[dict[str, Any]]:
    """The records of a trainer's JSONL log text (a checkpoint's copy: whole lines only)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def scalars(rec: Mapping[str, Any]) -> dict[str, float]:
    """The scalars one JSONL record gives the loggers: `train/loss`, `train/lr` at a log step, `val/<metric>` in
    percent (as the tables) at a validation; non-finite values left out."""
    if isinstance(rec.get("val"), Mapping):
        return {f"val/{k}": round(100 * float(v), 4) for k, v in rec["val"].items()
                if v is not None and math.isfinite(float(v))}
    out = {}
    if rec.get("loss") is not None:
        if math.isfinite(float(rec["loss"])):
            out["train/loss"] = float(rec["loss"])
        if rec.get("lr") is not None:
            out["train/lr"] = float(rec["lr"])
    return out


class TensorBoardMetrics:
    """TensorBoard event files of the JSONL records (torch.utils.tensorboard; needs the `tensorboard` package).
    The folder holds only this run's events: earlier event files there are removed first (a resume replays)."""

    PREFIX = "events.out.tfevents."

    def __init__(self, directory: PathLike | None, setup: str = "", history: Iterable[Mapping[str, Any]] = ()) -> None:
        self.writer = None
        if directory is None:
            return
        try:
            # an optional dependency (fcnlib[tensorboard]), imported only when a config asks for TensorBoard
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            say("fcn train: tensorboard not installed (pip install 'fcnlib[tensorboard]'): no TensorBoard events")
            return
        d = Path(directory)
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            raise DiskError(f"{d}: not a folder (a link or a file); remove it so TensorBoard events can go there")
        if d.is_dir():
            for f in d.iterdir():
                if f.name.startswith(self.PREFIX) and stat.S_ISREG(f.lstat().st_mode):
                    f.unlink()
        self.writer = SummaryWriter(log_dir=str(d))
        if setup:
            self.writer.add_text("setup", setup, 0)
        for rec in history:
            self.write(rec)

    def write(self, rec: Mapping[str, Any]) -> None:
        if self.writer is None or "iter" not in rec:
            return
        for name, value in scalars(rec).items():
            self.writer.add_scalar(name, value, int(rec["iter"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class LiveMetrics:
    """DVCLive mirror of the JSONL records (`scalars`): `train/loss`, `train/lr` at each log step, `val/<metric>`
    (in percent, as the tables) at each validation; metrics.json holds the latest of each. With
    `tensorboard_dir`, TensorBoard event files of the same scalars too."""

    def __init__(self, directory: PathLike | None, params: Mapping[str, Any],
                 history: Iterable[Mapping[str, Any]] = (), tensorboard_dir: PathLike | None = None,
                 setup: str = "") -> None:
        self.live = None
        history = list(history)
        self.tensorboard = TensorBoardMetrics(tensorboard_dir, setup, history)
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
        for rec in history:  # a resumed run: the checkpoint's records, then live ones
            self.write(rec, summary=False, replay=True)
        if history:
            self.live.make_summary()

    def write(self, rec: Mapping[str, Any], summary: bool = True, replay: bool = False) -> None:
        if not replay:  # TensorBoard replayed the checkpoint's records itself
            self.tensorboard.write(rec)
        if self.live is None or "iter" not in rec:
            return
        self.live.step = int(rec["iter"])
        for name, value in scalars(rec).items():
            self.live.log_metric(name, value)
        if summary:
            self.live.make_summary()

    def close(self) -> None:
        self.tensorboard.close()
        if self.live is not None:
            self.live.end()
            self.live = None
