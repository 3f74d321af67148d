"""The authors' released FCN caffemodels: what each one is (architecture, input, classes, the paper row
it compares with) and which the config asks to score. Plain data, no torch or numpy: the Snakefile and
config validation read it while the workflow is parsed. fcnlib.eval.released converts them;
fcnlib.report.released writes their report.

Layer names follow the authors' nets: single-stream nets use our state-dict keys as they are
(conv1_1 … fc7, score_fr, upscore2, score_pool4, …); SIFT Flow's two heads end in `_sem` / `_geo`
(as our multi-head keys); NYUD's late-fusion colour-HHA net suffixes each tower's layers with `color` /
`hha` (no underscore) and shares one `upscore` after summing the score maps — which equals our two
towers each upsampling with that kernel, since the upsampling is linear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcnlib.errors import ConfigError
from fcnlib.facts.datasets import REGISTRY

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


def net(name: str) -> Released:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"released model {name!r} is unknown; use one of {sorted(MODELS)}") from None


def by_caffemodel(filename: str) -> str | None:
    """The released model whose caffemodel has this file name (e.g. fcn8s-heavy-pascal.caffemodel)."""
    return next((n for n, m in MODELS.items() if m.caffemodel == Path(filename).name), None)


def arch(name: str, width: float = 1.0) -> dict[str, Any]:
    """`build_from_arch` description of our net equivalent to the released one (width < 1: demo stand-ins)."""
    m = net(name)
    n = REGISTRY[m.dataset].num_classes if m.heads is None else next(iter(m.heads.values()))
    one = {"variant": m.variant, "backbone": m.backbone, "num_classes": n,
           "width": float(width), "in_channels": 3, "heads": None if m.heads is None else dict(m.heads)}
    if m.fusion:
        return {"fusion": "late", "members": [dict(one), dict(one)], "weights": [0.5, 0.5], "split": 3}
    return one


def classes(name: str) -> list[str] | dict[str, list[str]]:
    """Class names of a released net: its dataset's (fcnlib.facts.datasets), per head when it has several."""
    ds = REGISTRY[net(name).dataset]
    if len(ds.classes) == 1:
        return list(ds.classes["sem"])
    return {h: list(c) for h, c in ds.classes.items()}


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
        m = net(name)
        out.append({"name": name, "source": spec["source"], "dataset": m.dataset,
                    "split": config["datasets"][m.dataset]["val_split"], "modalities": list(m.modalities),
                    "table2_row": m.table2_row})
    return out
