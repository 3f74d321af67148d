"""The authors' released FCN caffemodels, scored by us: what each one is, converting it, its report.

The cheapest real check of this reproduction: convert the caffemodels the authors released
(fcn.berkeleyvision.org, one `caffemodel-url` per net directory) into our weights files and score them
with the same `fcnlib.eval.evaluate` on the same split as our trained nets. `MODELS` says, per released net,
the architecture and input its Caffe net definition (net.py) and data layer (*_layers.py) give; the
config's `released:` section says which to score and where to download them (`sources:`).

Layer names follow the authors' nets: single-stream nets use our state-dict keys as they are
(conv1_1 … fc7, score_fr, upscore2, score_pool4, …); SIFT Flow's two heads end in `_sem` / `_geo`
(as our multi-head keys); NYUD's late-fusion colour-HHA net suffixes each tower's layers with `color` /
`hha` (no underscore) and shares one `upscore` after summing the score maps — which equals our two
towers each upsampling with that kernel, since the upsampling is linear.

This module imports no torch at import time, so config validation can use `MODELS`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcnlib.errors import ConfigError, WeightsError
from fcnlib.facts import paper
from fcnlib.facts.datasets import REGISTRY
from fcnlib.files.io import atomic_write_json, atomic_write_text, read_json, sha256_file

PathLike = str | os.PathLike

#: PASCAL-Context's data layer subtracts this rounded form of the VGG mean (pascalcontext_layers.py).
CONTEXT_MEAN_BGR = (104.007, 116.669, 122.679)
#: NYUD colour-HHA: layer-name suffix of each tower, in our late-fusion member order (rgb, hha).
FUSION_SUFFIXES = ("color", "hha")


@dataclass(frozen=True)
class Released:
    """One released net: its caffemodel file name and what our equivalent is."""

    caffemodel: str
    dataset: str                                  # our dataset name (pascal, nyud, siftflow, context)
    variant: str                                  # fcn32s | fcn16s | fcn8s | fcn8s-atonce
    backbone: str = "vgg16"
    modalities: tuple[str, ...] = ("rgb",)
    fusion: bool = False                          # NYUD colour-HHA late fusion (two towers)
    table2_row: str | None = None                 # Table 2 row whose "released" column our score fills
    paper_row: tuple[str, str] | None = None      # the paper's table/row of the comparable net
    remark: str = ""
    heads: Mapping[str, int] | None = field(default=None)


_SIFT = REGISTRY["siftflow"].heads

MODELS: Mapping[str, Released] = {
    "voc-fcn32s": Released("fcn32s-heavy-pascal.caffemodel", "pascal", "fcn32s", table2_row="FCN-32s",
                           paper_row=("table2", "FCN-32s")),
    "voc-fcn16s": Released("fcn16s-heavy-pascal.caffemodel", "pascal", "fcn16s", table2_row="FCN-16s",
                           paper_row=("table2", "FCN-16s")),
    "voc-fcn8s": Released("fcn8s-heavy-pascal.caffemodel", "pascal", "fcn8s", table2_row="FCN-8s",
                          paper_row=("table2", "FCN-8s")),
    "voc-fcn8s-atonce": Released("fcn8s-atonce-pascal.caffemodel", "pascal", "fcn8s-atonce",
                                 table2_row="FCN-8s-atonce"),
    "voc-fcn-alexnet": Released("fcn-alexnet-pascal.caffemodel", "pascal", "fcn32s", backbone="alexnet",
                                paper_row=("table1", "FCN-AlexNet"),
                                remark="trained as the README says (normalised loss, iter_size 20); the "
                                       "paper's 39.8 is on VOC2011 val"),
    "nyud-fcn32s-color": Released("nyud-fcn32s-color-heavy.caffemodel", "nyud", "fcn32s",
                                  paper_row=("table4", "FCN-32s RGB")),
    "nyud-fcn32s-hha": Released("nyud-fcn32s-hha-heavy.caffemodel", "nyud", "fcn32s", modalities=("hha",),
                                paper_row=("table4", "FCN-32s HHA")),
    "nyud-fcn32s-color-hha": Released("nyud-fcn32s-color-hha-heavy.caffemodel", "nyud", "fcn32s",
                                      modalities=("rgb", "hha"), fusion=True,
                                      paper_row=("table4", "FCN-32s RGB-HHA")),
    "siftflow-fcn32s": Released("siftflow-fcn32s-heavy.caffemodel", "siftflow", "fcn32s",
                                heads=_SIFT),
    "siftflow-fcn16s": Released("siftflow-fcn16s-heavy.caffemodel", "siftflow", "fcn16s",
                                heads=_SIFT, paper_row=("table5", "FCN-16s"),
                                remark="the authors' README: semantic scores of this release are 'not quite "
                                       "right' (missing classes); geometric ones are fine"),
    "siftflow-fcn8s": Released("siftflow-fcn8s-heavy.caffemodel", "siftflow", "fcn8s",
                               heads=_SIFT),
    "pascalcontext-fcn32s": Released("pascalcontext-fcn32s-heavy.caffemodel", "context", "fcn32s",
                                     paper_row=("context", "FCN-32s")),
    "pascalcontext-fcn16s": Released("pascalcontext-fcn16s-heavy.caffemodel", "context", "fcn16s",
                                     paper_row=("context", "FCN-16s")),
    "pascalcontext-fcn8s": Released("pascalcontext-fcn8s-heavy.caffemodel", "context", "fcn8s",
                                    paper_row=("context", "FCN-8s")),
}


def _model(name: str) -> Released:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"released model {name!r} is unknown; use one of {sorted(MODELS)}") from None


def by_caffemodel(filename: str) -> str | None:
    """The released model whose caffemodel has this file name (e.g. fcn8s-heavy-pascal.caffemodel)."""
    return next((n for n, m in MODELS.items() if m.caffemodel == Path(filename).name), None)


# ---------------------------------------------------------------------------------------------------
# What a released net is in our terms: arch, preprocessing, classes
# ---------------------------------------------------------------------------------------------------
def arch(name: str, width: float = 1.0) -> dict[str, Any]:
    """`build_from_arch` description of our net equivalent to the released one (width < 1: demo stand-ins)."""
    m = _model(name)
    n = REGISTRY[m.dataset].num_classes if m.heads is None else next(iter(m.heads.values()))
    one = {"variant": m.variant, "backbone": m.backbone, "num_classes": n,
           "width": float(width), "in_channels": 3, "heads": None if m.heads is None else dict(m.heads)}
    if m.fusion:
        return {"fusion": "late", "members": [dict(one), dict(one)], "weights": [0.5, 0.5], "split": 3}
    return one


def preprocessing(name: str) -> dict[str, dict[str, Any]]:
    """Per modality, what the authors' data layer fed the net (BGR, 0–255, the dataset's mean)."""
    # torch-free at import: the Snakefile and config validation read MODELS while the workflow is parsed
    from fcnlib.models.preprocessing import CAFFE_VGG, HHA, NYUD_RGB_CAFFE, SIFTFLOW_CAFFE, Preprocessing

    m = _model(name)
    rgb = {"pascal": CAFFE_VGG, "nyud": NYUD_RGB_CAFFE, "siftflow": SIFTFLOW_CAFFE,
           "context": Preprocessing("BGR", 255.0, CONTEXT_MEAN_BGR)}[m.dataset]
    return {mod: (HHA if mod == "hha" else rgb).to_dict() for mod in m.modalities}


def classes(name: str) -> list[str] | dict[str, list[str]]:
    """Class names of a released net: its dataset's (fcnlib.facts.datasets), per head when it has several."""
    spec = REGISTRY[_model(name).dataset]
    if len(spec.classes) == 1:
        return list(spec.classes["sem"])
    return {h: list(c) for h, c in spec.classes.items()}


def layer_map(name: str, model: Any) -> dict[str, list[str]]:
    """Caffe layer name → our module prefixes it fills (two for the colour-HHA net's shared `upscore`)."""
    m = _model(name)
    params = sorted({k.rsplit(".", 1)[0] for k in model.state_dict()})
    if not m.fusion:
        return {p: [p] for p in params}
    out: dict[str, list[str]] = {}
    final = None
    for p in params:
        member, layer = p.split(".", 1)
        sfx = FUSION_SUFFIXES[0 if member == "net_a" else 1]
        if layer.startswith("upscore") and layer not in ("upscore2", "upscore_pool4"):
            final = layer
            out.setdefault(layer, []).append(p)  # one shared final upsampler after the fused scores
        else:
            out[f"{layer}{sfx}"] = [p]
    if final is None:
        raise WeightsError(f"released {name}: late-fusion net without a final upsampler")
    return out


def convert(src: PathLike, dst: PathLike, name: str, width: float | None = None, data_source: str = "real") -> Path:
    """Released caffemodel → our weights file (save_model format, with arch/preprocessing/modalities).
    `width` None: read from the trunk's blob shapes (1.0 for the authors' files, less for demo stand-ins);
    `data_source` "demo" marks a demo stand-in (ModelMeta.is_demo: `fcn segment` warns)."""
    from fcnlib.models import ModelMeta, convert_fcn_caffemodel, save_model  # torch-free at import (above)

    m = _model(name)
    if width is None:
        from fcnlib.models.caffe import read_caffemodel  # torch-free at import (above)
        from fcnlib.models.surgery import detect_width  # (as above)

        width = detect_width(read_caffemodel(src), m.backbone, src, FUSION_SUFFIXES[0] if m.fusion else "")
    a = arch(name, width)
    model = convert_fcn_caffemodel(src, a, layer_map=lambda net: layer_map(name, net))
    meta = ModelMeta.create(a, m.modalities, preprocessing(name), classes(name), dataset=m.dataset,
                            data_source=data_source, experiment=f"released/{name}", released=name,
                            source=Path(src).name,
                            source_sha256=sha256_file(src))
    save_model(model, meta, dst)
    return Path(dst)


# ---------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------
def config_problems(config: Mapping[str, Any], source: str = "config") -> list[str]:
    """`released:` entries must name known models, existing sources and datasets of this config: every
    broken one (fcnlib.pipeline.config.reference_problems lists them with the rest)."""
    out = []
    for name, spec in (config.get("released") or {}).items():
        where = f"{source}: at 'released.{name}"
        if name not in MODELS:
            out.append(f"{where}': unknown released model; use one of {sorted(MODELS)}")
        elif MODELS[name].dataset not in config["datasets"]:
            out.append(f"{where}': dataset {MODELS[name].dataset!r} has no entry under 'datasets'")
        if spec["source"] not in config["sources"]:
            out.append(f"{where}.source': {spec['source']!r} is not under 'sources'")
    return out


def entries(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every released model to score: {name, source, dataset, split, modalities, table2_row}."""
    out = []
    for name, spec in (config.get("released") or {}).items():
        m = _model(name)
        out.append({"name": name, "source": spec["source"], "dataset": m.dataset,
                    "split": config["datasets"][m.dataset]["val_split"], "modalities": list(m.modalities),
                    "table2_row": m.table2_row})
    return out


# ---------------------------------------------------------------------------------------------------
# results/released.md + json
# ---------------------------------------------------------------------------------------------------
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
        m = _model(name)
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
