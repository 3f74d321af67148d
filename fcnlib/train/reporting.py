"""What a training tells people while it runs, besides log.jsonl (the record every summary is built from):

* human lines in the rule's log (stderr under Snakemake): the set-up once (device, precision, recipe, data),
  then one line per validation with its mean IU, pixel accuracy, the last loss and the lr — what the field's
  trainers print, so `tail logs/train/<experiment>.log` answers "how is it doing";
* the loggers the field's tools read (fcnlib.progress.trackers): DVCLive files (`dvclive/` beside the weights)
  and, when the config asks, TensorBoard event files (`tensorboard/`), each mirroring the JSONL log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


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


