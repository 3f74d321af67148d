"""What reproducing each paper table costs at full scale: GPU-hours and disk. Estimates, not measurements.

GPU-hours: every experiment a table needs (its rows and their staged-init parents) trains for the
config's iterations on batch_size × iter_size images each; one training image at 500×500 costs
TRAIN_PASSES forward passes (a backward pass is about two forwards) of the paper's Table 1 forward time
for its backbone, which was measured on the paper's GPU (an NVIDIA Titan Black): a current GPU is
several times faster, so read the hours as an upper estimate. Evaluation adds under 1 % and is left out.

Disk: the downloads of each dataset and backbone a table needs (the config's `size` where it gives one,
else APPROX_GB), counted twice (archive + extraction), plus per trained net its weights.pt and its
resume file (weights + momentum) at 4 bytes per parameter (the paper's Table 1 parameter counts).
README's "Cost of a full reproduction" table is `render_markdown(table_costs(config/config.yaml))`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fcnlib.facts import datasets as registry
from fcnlib.facts import paper
from fcnlib.pipeline import config as fcncfg

TRAIN_PASSES = 3
#: The paper's Table 1 row that gives each backbone's forward time and parameter count.
TABLE1_ROW = {"vgg16": "FCN-VGG16", "alexnet": "FCN-AlexNet", "googlenet": "FCN-GoogLeNet"}
#: Approximate download sizes (GB) of the sources the config gives no `size` for; NYUD's archive has no
#: published size (assumed about the NYUDv2 labelled set's). Split lists and class files are negligible.
APPROX_GB = {"voc2011": 1.7, "voc2010": 1.3, "sbd": 1.4, "context": 0.03, "nyud": 3.0, "siftflow": 0.1,
             "vgg16_caffe": 0.55, "vgg16_tv": 0.55, "caffenet_caffe": 0.24, "googlenet_caffe": 0.05,
             "googlenet_tv": 0.05}
GB = 1e9


def _table1(backbone: str) -> Mapping[str, Any]:
    return paper.TABLES["table1"]["rows"][TABLE1_ROW[backbone]]


def gpu_hours(config: Mapping[str, Any], name: str) -> float:
    """Estimated GPU-hours to train experiment `name` of `config` (see the module's assumptions)."""
    exp = fcncfg.experiment(dict(config), name)
    recipe = fcncfg.resolve_recipe(dict(config), name)
    images = exp["iterations"] * recipe["batch_size"] * recipe.get("iter_size", 1)
    return images * TRAIN_PASSES * _table1(exp["backbone"])["forward_ms"] / 1000 / 3600


def _with_parents(config: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """The experiments and everything they are initialised from (a 16s needs its 32s trained), in order."""
    out: list[str] = []
    todo = list(names)
    while todo:
        n = todo.pop(0)
        if n in out:
            continue
        out.append(n)
        init = config["experiments"][n].get("init", "imagenet")
        todo += init if isinstance(init, list) else ([] if init == "imagenet" else [init])
    return out


def _table_experiments(config: Mapping[str, Any], table: str) -> list[str]:
    refs = [r.split("@")[0] for r in config["tables"][table].values() if isinstance(r, str)]
    return _with_parents(config, dict.fromkeys(refs))


def _sources(config: Mapping[str, Any], names: Iterable[str]) -> set[str]:
    """Config sources the experiments download: their datasets' inputs and split lists, their backbones."""
    out = set()
    for n in names:
        exp = fcncfg.experiment(dict(config), n)
        spec = registry.REGISTRY.get(exp["dataset"])
        if spec is not None:
            out |= {i.ref for i in spec.inputs.values() if i.kind in ("extracted", "raw")}
            out |= set(registry.split_list_sources(exp["dataset"], config["sources"]).values())
        out.add(config["backbones"][exp["backbone"]]["source"])
    return out


def _source_gb(config: Mapping[str, Any], source: str) -> float:
    size = config["sources"][source].get("size")
    return size / GB if size else APPROX_GB.get(source, 0.0)


def disk_gb(config: Mapping[str, Any], names: Iterable[str]) -> float:
    """Estimated peak disk (GB) for training and scoring the experiments (see the module's assumptions)."""
    names = list(names)
    data = sum(2 * _source_gb(config, s) for s in _sources(config, names))
    nets = sum(3 * 4 * _table1(fcncfg.experiment(dict(config), n)["backbone"])["params"] / GB for n in names)
    return data + nets


def table_costs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per table of the config (tables with no experiment to train left out), then the total."""
    rows, everything = [], []
    for table in config["tables"]:
        names = _table_experiments(config, table)
        if not names:
            continue
        everything += [n for n in names if n not in everything]
        rows.append({"table": table, "experiments": len(names),
                     "gpu_hours": sum(gpu_hours(config, n) for n in names), "disk_gb": disk_gb(config, names)})
    rows.append({"table": "all tables", "experiments": len(everything),
                 "gpu_hours": sum(gpu_hours(config, n) for n in everything), "disk_gb": disk_gb(config, everything)})
    return rows


def render_markdown(rows: list[dict[str, Any]]) -> str:
    """The README's cost table (GPU-hours rounded to 10, disk to 1 GB: they are estimates)."""
    lines = ["| table | nets trained | GPU-hours (est.) | disk GB (est.) |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['table']} | {r['experiments']} | {round(r['gpu_hours'], -1):.0f} | "
                     f"{r['disk_gb']:.0f} |")
    return "\n".join(lines)
