"""What a training tells people while it runs, besides log.jsonl (the record every summary is built from):

* human lines in the rule's log (stderr under Snakemake): the set-up once (device, precision, recipe, data),
  then one line per validation with its mean IU, pixel accuracy, the last loss and the lr — what the field's
  trainers print, so `tail logs/train/<experiment>.log` answers "how is it doing";
* DVCLive files (`dvclive/` beside the weights: metrics.json, plots/metrics/{train,val}/*.tsv, params.yaml),
  which `dvc plots`, DVC's editor extensions and DVC Studio read. DVCLive is optional (`fcnlib[dvc]`): when
  it is not installed one line says so and training goes on;
* TensorBoard event files (`tensorboard/` beside the weights) when the config asks (`training.tensorboard:
  true`; `fcnlib[tensorboard]`): the same scalars under the same names, the run's set-up as text.

Both mirror the JSONL log record by record; on resume the log is the checkpoint's copy, so their files are
rebuilt from it (replayed), never appended twice.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fcnlib.errors import DiskError

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

    def __init__(self, directory: PathLike | None, setup: str = "", log_text: str = "") -> None:
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
        for line in log_text.splitlines():
            if line.strip():
                self.write(json.loads(line))

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

    def __init__(self, directory: PathLike | None, params: Mapping[str, Any], log_text: str = "",
                 tensorboard_dir: PathLike | None = None, setup: str = "") -> None:
        self.live = None
        self.tensorboard = TensorBoardMetrics(tensorboard_dir, setup, log_text)
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
                self.write(json.loads(line), summary=False, replay=True)
        if log_text:
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
