"""results/tables.md and tables.json: our numbers beside the paper's, laid out like its tables.

Every cell reads "ours / paper". A demo run (synthetic offline data) says DEMO in the title, the header
and every table heading, so its numbers can never be mistaken for a reproduction of the paper. Output
is deterministic (no timestamps, sorted keys) so a rerun with the same inputs is byte-identical.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fcnlib.errors import ConfigError
from fcnlib.facts import paper
from fcnlib.files.io import atomic_write_json, atomic_write_text, read_json

PathLike = str | os.PathLike

CITATION = "Long, Shelhamer, Darrell, Fully Convolutional Networks for Semantic Segmentation, CVPR 2015"
BASELINE_ROW = "FCN-32s"  # ablations are read as differences from this row


# ---------------------------------------------------------------------------------------------------
# Collecting numbers
# ---------------------------------------------------------------------------------------------------
def _load_metrics(m: Any) -> tuple[dict[str, Any] | None, str | None]:
    """metrics dict/path → (dict, None) or (None, why not)."""
    if m is None:
        return None, None
    if isinstance(m, Mapping):
        return dict(m), None
    p = Path(m)
    if not p.is_file():
        return None, f"no metrics file at {p}"
    return read_json(p), None


def _pct(v: Any) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return round(100.0 * float(v), 4)


def _ours(table_key: str, columns: Sequence[str], metrics: Mapping[str, Any],
          stats: Mapping[str, Any] | None, timing: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in columns:
        unit = paper.COLUMNS[col][1]
        if col in paper.TABLES[table_key]["paper_only"]:
            out[col] = None
        elif unit == "pct":
            out[col] = _pct(metrics.get(col))
        elif col == "forward_ms":
            ms = (timing or {}).get("median_ms")
            out[col] = None if ms is None else round(float(ms), 2)
        else:
            v = (stats or {}).get(col)
            out[col] = None if v is None else int(v)
    return out


def _check_header(header: Mapping[str, Any]) -> dict[str, Any]:
    h = dict(header)
    if h.get("source") not in ("demo", "real"):
        raise ConfigError(f"tables header source={h.get('source')!r}; use 'demo' (synthetic offline data) "
                          f"or 'real' (the paper's datasets)")
    return h


def _released_cells(released: Sequence[Mapping[str, Any]] | None, header: Mapping[str, Any]
                    ) -> dict[tuple[str, str], tuple[str, float | None]]:
    """(table, row) → (released model, our mean IU of it in percent): the "released" column, measured."""
    out: dict[tuple[str, str], tuple[str, float | None]] = {}
    for r in released or ():
        tkey, row = r.get("table"), r.get("row")
        if tkey not in paper.TABLES or row not in paper.TABLES[tkey]["rows"] \
                or "released_mean_iu" not in paper.TABLES[tkey]["columns"]:
            raise ConfigError(f"released model {r.get('name')!r}: {tkey} / {row} has no released-model "
                              f"column; fix fcnlib.facts.released.MODELS")
        m, _ = _load_metrics(r.get("metrics"))
        if m is not None and header["source"] == "real" and m.get("dataset_source") == "demo":
            raise ConfigError(f"{r.get('metrics')}: metrics come from DEMO data but the tables header says "
                              f"source=real; label the run 'demo'")
        out[tkey, row] = (str(r.get("name")), None if m is None else _pct(m.get("mean_iu")))
    return out


def build_tables(records: Sequence[Mapping[str, Any]], header: Mapping[str, Any],
                 released: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The tables.json content: every paper table with our value and the paper's for each cell.

    `released`: [{table, row, name, metrics}] — our scores of the authors' released caffemodels, which
    fill the "released caffemodel" column (the paper's side of that cell is the README's number).
    """
    header = _check_header(header)
    rel_cells = _released_cells(released, header)
    placed: dict[tuple[str, str], Mapping[str, Any]] = {}
    for rec in records:
        tkey, row = rec.get("table"), rec.get("row")
        if tkey not in paper.TABLES:
            raise ConfigError(f"experiment {rec.get('experiment')!r}: table {tkey!r} is not one of "
                              f"{', '.join(paper.TABLES)}; fix its 'table' in the config")
        if row not in paper.TABLES[tkey]["rows"]:
            raise ConfigError(f"experiment {rec.get('experiment')!r}: row {row!r} is not in {tkey} (rows: "
                              f"{', '.join(paper.TABLES[tkey]['rows'])}); fix its 'row' in the config")
        if (tkey, row) in placed:
            raise ConfigError(f"experiments {placed[tkey, row].get('experiment')!r} and "
                              f"{rec.get('experiment')!r} both fill {tkey} / {row}; give one another row")
        placed[tkey, row] = rec

    tables: dict[str, Any] = {}
    for tkey, tdef in paper.TABLES.items():
        cols = list(tdef["columns"])
        rows = []
        for row, pvals in tdef["rows"].items():
            rec = placed.get((tkey, row))
            entry: dict[str, Any] = {
                "row": row, "experiment": rec.get("experiment") if rec else None,
                "paper": {c: pvals.get(c) for c in cols}, "remark": pvals.get("remark"),
                "note": rec.get("note") if rec else None,
            }
            metrics, why = _load_metrics(rec.get("metrics")) if rec else (None, None)
            if metrics is None:
                reason = why or (rec.get("note") if rec else None) or "no experiment in the config"
                entry.update(status="not run", ours=dict.fromkeys(cols), delta_mean_iu=None, reason=reason)
            else:
                src = metrics.get("dataset_source")
                if header["source"] == "real" and src == "demo":
                    raise ConfigError(f"{rec.get('metrics')}: metrics come from DEMO data but the tables "
                                      f"header says source=real; label the run 'demo'")
                ours = _ours(tkey, cols, metrics, rec.get("stats"), rec.get("timing"))
                p_iu, o_iu = pvals.get("mean_iu"), ours.get("mean_iu")
                entry.update(status="ok", ours=ours, reason=None,
                             delta_mean_iu=None if p_iu is None or o_iu is None else round(o_iu - p_iu, 4),
                             n_images=metrics.get("n_images"), split=metrics.get("split"),
                             dataset=metrics.get("dataset"))
            if (tkey, row) in rel_cells:
                name, value = rel_cells[tkey, row]
                entry["ours"] = {**entry["ours"], "released_mean_iu": value}
                entry["released_model"] = name
            rows.append(entry)
        tables[tkey] = {"title": tdef["title"], "caption": tdef["caption"], "columns": cols, "rows": rows}
    _ablation_effects(tables["ablations"]["rows"], tables["table2"]["rows"])
    return {"header": {**header, "demo": header["source"] == "demo"}, "paper": CITATION, "tables": tables}


def _ablation_effects(rows: list[dict[str, Any]], table2: list[dict[str, Any]]) -> None:
    """Each ablation's mean-IU difference from the FCN-32s (SBD) baseline, ours and the paper's.

    The baseline is Table 2's FCN-32s; when the config does not place it in the ablations as well, the
    ablation row is filled from Table 2 (the same run), so the differences can still be read.
    """
    base = next((r for r in rows if r["row"] == BASELINE_ROW), None)
    t2 = next((r for r in table2 if r["row"] == BASELINE_ROW), None)
    if base is not None and base["status"] != "ok" and t2 is not None and t2["status"] == "ok":
        base.update({k: t2[k] for k in ("status", "experiment", "reason", "n_images", "split", "dataset")})
        base["ours"] = {"mean_iu": t2["ours"]["mean_iu"]}
        o_iu, p_iu = t2["ours"]["mean_iu"], base["paper"]["mean_iu"]
        base["delta_mean_iu"] = None if p_iu is None or o_iu is None else round(o_iu - p_iu, 4)
        base["note"] = "the Table 2 FCN-32s run"
    b_ours = base["ours"].get("mean_iu") if base else None
    b_paper = base["paper"].get("mean_iu") if base else None
    for r in rows:
        o, p = r["ours"].get("mean_iu"), r["paper"].get("mean_iu")
        r["effect_vs_baseline"] = {
            "ours": None if o is None or b_ours is None else round(o - b_ours, 4),
            "paper": None if p is None or b_paper is None else round(p - b_paper, 4),
        }


# ---------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------
def _fmt(col: str, v: Any) -> str:
    if v is None:
        return "—"
    unit = paper.COLUMNS[col][1]
    if col == "released_mean_iu":
        return f"{v:.2f}"
    if unit == "pct":
        return f"{v:.1f}"
    if unit == "ms":
        return f"{v:.0f}" if v >= 10 else f"{v:.1f}"
    if unit == "count":
        if v >= 10e6:
            return f"{v / 1e6:.0f}M"
        if v >= 1e6:
            return f"{v / 1e6:.1f}M"
        return f"{v / 1e3:.0f}k" if v >= 1e3 else str(int(v))
    return str(int(v))


def _signed(v: float | None) -> str:
    return "—" if v is None else f"{v:+.1f}".replace("-", "−")


def _md_cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _fmt_iterations(it: Any) -> str:
    if isinstance(it, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in sorted(it.items())) or "—"
    return "—" if it is None else str(it)


def render_markdown(data: Mapping[str, Any]) -> str:
    h = data["header"]
    demo = bool(h.get("demo"))
    tag = " [DEMO]" if demo else ""
    out = []
    if demo:
        out.append("# DEMO run — synthetic offline data, NOT a reproduction of the paper's numbers\n")
        out.append("> **DEMO.** These numbers come from small deterministic synthetic datasets in the real "
                   "on-disk formats, trained for a few iterations. They show that every stage of the "
                   "pipeline runs; they say nothing about the paper's results.\n")
    else:
        out.append("# FCN reproduction — our numbers beside the paper's\n")
    config = h.get("config")
    if isinstance(config, Mapping):
        config = json.dumps(config, sort_keys=True)
    out.append(f"- **Data source:** {'DEMO (synthetic)' if demo else 'real datasets'}")
    out.append(f"- **Config:** {_md_cell(config if config is not None else '—')}")
    out.append(f"- **Iterations:** {_md_cell(_fmt_iterations(h.get('iterations')))}")
    out.append(f"- **Device:** {_md_cell(h.get('device') or '—')}")
    if h.get("width") is not None:
        note = "" if h["width"] == 1 else " (not the paper's 1.0)"
        out.append(f"- **Network width:** {h['width']}{note}")
    out.append(f"- **Paper:** {data['paper']}. Cells read *ours / paper*; metrics in percent; "
               f"Δ = ours − paper on mean IU; — = no number.\n")

    for tkey, t in data["tables"].items():
        cols = t["columns"]
        ablation = tkey == "ablations"
        has_remark = any(r.get("remark") for r in t["rows"])
        heads = ["", *(paper.COLUMNS[c][0] for c in cols), "Δ mean IU"]
        if ablation:
            heads.append("vs FCN-32s (ours / paper)")
        heads.append("experiment")
        if has_remark:
            heads.append("paper's remark")
        out.append(f"## {t['title']}{tag}\n")
        out.append(f"*{t['caption']}*\n")
        out.append("| " + " | ".join(heads) + " |")
        out.append("|" + "---|" * len(heads))
        for r in t["rows"]:
            cells = [r["row"]]
            cells += [f"{_fmt(c, r['ours'][c])} / {_fmt(c, r['paper'][c])}" for c in cols]
            cells.append(_signed(r["delta_mean_iu"]))
            if ablation:
                e = r["effect_vs_baseline"]
                cells.append(f"{_signed(e['ours'])} / {_signed(e['paper'])}")
            if r["status"] == "ok":
                exp = r["experiment"] or ""
                if r.get("n_images") is not None:
                    exp += f" ({r['n_images']} images of {r.get('dataset')}/{r.get('split')})"
                if r.get("note"):
                    exp += f"; {r['note']}"
            else:
                exp = f"**not run**: {r['reason']}" if r.get("reason") else "**not run**"
            if r.get("released_model"):
                exp += f"; released: results/released/{r['released_model']}"
            cells.append(exp)
            if has_remark:
                cells.append(r.get("remark") or "")
            out.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def write_tables(records: Sequence[Mapping[str, Any]], header: Mapping[str, Any], out_md: PathLike,
                 out_json: PathLike, released: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Build both outputs from the experiment records and write them atomically; returns the JSON data."""
    data = build_tables(records, header, released)
    atomic_write_json(out_json, data)
    atomic_write_text(out_md, render_markdown(data))
    return data
