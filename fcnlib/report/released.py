"""results/released.md + json: our scores of the authors' released caffemodels beside their README's and the
paper's numbers."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fcnlib.errors import ConfigError
from fcnlib.facts import paper
from fcnlib.facts.released import net
from fcnlib.files.io import atomic_write_json, atomic_write_text, read_json

PathLike = str | os.PathLike


_COLS = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "geo_acc")


def _pct(v: Any) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(100.0 * float(v), 4)


def build_report(records: Sequence[Mapping[str, Any]], header: Mapping[str, Any]) -> dict[str, Any]:
    """records: {name, metrics (dict or path)} → released.json content (ours beside the README's)."""
    rows = []
    for rec in records:
        name = rec["name"]
        m = net(name)
        met = rec["metrics"]
        met = dict(met) if isinstance(met, Mapping) else read_json(met)
        ours = {c: _pct(met.get(c)) for c in _COLS}
        readme = paper.RELEASED_README_MEAN_IU.get(name)
        p_iu = paper.TABLES[m.paper_row[0]]["rows"][m.paper_row[1]].get("mean_iu") if m.paper_row else None
        rows.append({
            "name": name, "caffemodel": m.caffemodel, "dataset": met.get("dataset", m.dataset),
            "split": met.get("split"), "n_images": met.get("n_images"), "ours": ours,
            "readme_mean_iu": readme, "paper_mean_iu": p_iu,
            "paper_row": None if m.paper_row is None else f"{m.paper_row[0]} / {m.paper_row[1]}",
            "delta_vs_readme": None if readme is None or ours["mean_iu"] is None
            else round(ours["mean_iu"] - readme, 4),
            "weights_sha256": met.get("weights_sha256"), "remark": m.remark,
            "dataset_source": met.get("dataset_source"),
        })
    demo = header.get("source") == "demo"
    if not demo and any(r["dataset_source"] == "demo" for r in rows):
        raise ConfigError("released report: metrics come from DEMO data but the header says source=real; "
                          "label the run 'demo'")
    return {"header": {**dict(header), "demo": demo}, "rows": rows}


def _f(v: Any, nd: int = 1) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def render_report(data: Mapping[str, Any]) -> str:
    h = data["header"]
    demo = bool(h.get("demo"))
    out = []
    if demo:
        out.append("# DEMO — the released-model path on stand-in caffemodels, NOT the authors' nets\n")
        out.append("> **DEMO.** The caffemodels scored here are random stand-ins with the authors' layer "
                   "names and blob shapes at the demo width, on synthetic data: the numbers show that "
                   "download → convert → evaluate runs, nothing about the released models.\n")
    else:
        out.append("# The authors' released FCN caffemodels, scored by us\n")
    out.append(f"- **Config:** {h.get('config', '—')}; **device:** {h.get('device') or '—'}; "
               f"**width:** {h.get('width', 1.0)}")
    out.append("- Converted with `fcn convert-weights <caffemodel> --released NAME` and scored by the same "
               "`fcnlib.eval.evaluate` as our trained nets (whole images, one confusion matrix per split). "
               "Metrics in percent; README = the authors' README / net directory; paper = the paper's "
               "comparable row (its nets were trained differently); Δ = ours − README.\n")
    heads = ["released model", "caffemodel", "split (images)", "pixel acc.", "mean acc.", "mean IU",
             "f.w. IU", "geom. acc.", "README mean IU", "Δ", "paper mean IU (row)", "remark"]
    out.append("| " + " | ".join(heads) + " |")
    out.append("|" + "---|" * len(heads))
    for r in data["rows"]:
        o = r["ours"]
        paper_cell = "—" if r["paper_row"] is None else f"{_f(r['paper_mean_iu'])} ({r['paper_row']})"
        delta = "—" if r["delta_vs_readme"] is None else f"{r['delta_vs_readme']:+.2f}".replace("-", "−")
        cells = [r["name"], r["caffemodel"], f"{r['dataset']}/{r['split']} ({r['n_images']})",
                 _f(o["pixel_acc"]), _f(o["mean_acc"]), _f(o["mean_iu"], 2), _f(o["fw_iu"]),
                 _f(o["geo_acc"]), _f(r["readme_mean_iu"], 2), delta, paper_cell, r["remark"]]
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    out.append("")
    return "\n".join(out)


def write_report(records: Sequence[Mapping[str, Any]], header: Mapping[str, Any], out_md: PathLike,
                 out_json: PathLike) -> dict[str, Any]:
    data = build_report(records, header)
    atomic_write_json(out_json, data)
    atomic_write_text(out_md, render_report(data))
    return data
