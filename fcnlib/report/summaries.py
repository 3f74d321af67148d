"""Small per-run files for versioning tools: `dvc metrics show` reads one flat JSON of headline numbers per
evaluated (experiment, split), `dvc plots diff` overlays learning curves read from TSV files.

The full metrics.json (per-class IU and accuracy, provenance) stays where the evaluate rule writes it;
these files repeat only the five numbers the paper reports, in percent as in its tables.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fcnlib.errors import DataError
from fcnlib.files.io import atomic_write_json, atomic_write_text, read_json
from fcnlib.report.figures import read_log

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


def curve_tables(log_path: str | os.PathLike) -> tuple[str, str]:
    """A trainer log → (loss TSV: iter, loss; validation TSV: iter, mean_iu, pixel_acc in percent)."""
    loss, val = read_log(log_path)
    loss_rows = ["iter\tloss"] + [f"{r['iter']}\t{float(r['loss']):.6g}" for r in loss
                                  if r.get("loss") is not None and math.isfinite(float(r["loss"]))]
    val_rows = ["iter\tmean_iu\tpixel_acc"]
    for r in val:
        v = r["val"]
        if v.get("mean_iu") is None:
            continue
        pa = _percent(v.get("pixel_acc"), f"{log_path}: val.pixel_acc")
        val_rows.append(f"{r['iter']}\t{_percent(v['mean_iu'], f'{log_path}: val.mean_iu')}\t"
                        f"{'' if pa is None else pa}")
    return "\n".join(loss_rows) + "\n", "\n".join(val_rows) + "\n"


def write_summaries(evaluations: Iterable[tuple[str | os.PathLike, str | os.PathLike]],
                    curves: Iterable[tuple[str | os.PathLike, str | os.PathLike, str | os.PathLike]]) -> int:
    """Write every (metrics.json → headline JSON) and every (log.jsonl → loss TSV, val TSV) pair.

    `evaluations` holds (metrics.json, out.json); `curves` holds (log.jsonl, loss.tsv, val.tsv).
    Returns the number of files written.
    """
    n = 0
    for src, out in evaluations:
        atomic_write_json(Path(out), headline(read_json(src), str(src)))
        n += 1
    for log, loss_out, val_out in curves:
        loss, val = curve_tables(log)
        atomic_write_text(Path(loss_out), loss)
        atomic_write_text(Path(val_out), val)
        n += 2
    return n
