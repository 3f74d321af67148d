# Config validation, path helpers and wildcard constraints (no rules here).
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from fcnlib import config as fcncfg
from fcnlib import released as fcnreleased
from fcnlib.errors import ConfigError

# Config = config/config.yaml unless --configfile gives a complete one (with `experiments`, e.g.
# config/demo.yaml), which replaces it; a partial file or --config pairs (`training: {threads: 4}`) are
# deep-merged over it (fcnlib.config.compose_config). No Snakefile `configfile:`: it would merge the paper's
# experiments into the demo's. The header's "Config file(s)" and the log line name every source.
_DEFAULT_CONFIG = Path("config/config.yaml")
if not _DEFAULT_CONFIG.exists():  # --directory elsewhere: the default beside the Snakefile
    _DEFAULT_CONFIG = Path(workflow.main_snakefile).parent / "config" / "config.yaml"
# Snakemake read the --configfile files with its own YAML loader: hold them to fcnlib's bounds (size, alias
# expansion, UTF-8) before their contents are used.
try:
    for _f in workflow.overwrite_configfiles:
        fcncfg.load_yaml(_f)
except ConfigError as _e:
    raise WorkflowError(f"invalid configuration — {_e}") from None
_partial = "experiments" not in config
_composed, _sources = fcncfg.compose_config(
    config, workflow.overwrite_configfiles, dict(workflow.config_settings.config), default=_DEFAULT_CONFIG
)
config.clear()
config.update(_composed)
if _partial:
    workflow.configfiles.insert(0, _DEFAULT_CONFIG.absolute())
_CONFIG_SOURCE = " + ".join(_sources)
logger.info(f"fcn config: {_CONFIG_SOURCE}")

try:
    fcncfg.validate_config(config, source=_CONFIG_SOURCE, cache_dir=".snakemake/fcn")
except ConfigError as _e:
    raise WorkflowError(f"invalid configuration — {_e}") from None

# Local runs: at most as many GPU jobs at once as this box has GPUs (1 on a CPU box), so
# `snakemake --cores 8 results/tables.md` is safe without `--resources gpu=…`; each job then claims its
# own GPU (fcnlib.devices). An explicit --resources gpu=N wins; cluster executors are not capped (the
# executor is not known yet while the Snakefile is parsed; `_nodes`, i.e. --jobs, is set only for them).
if workflow.global_resources["_nodes"].value is None and "gpu" not in workflow.global_resources:
    from fcnlib.devices import visible_gpu_count

    workflow.global_resources["gpu"] = max(1, visible_gpu_count())
    if workflow.is_main_process:
        print(
            f"fcn: at most gpu={workflow.global_resources['gpu'].value} GPU job(s) at once (this box's GPUs; "
            f"--resources gpu=N to change)",
            file=sys.stderr,
        )
# Conda jobs (--sdm conda): the stage envs (workflow/envs/*.yaml) hold fcnlib's pinned dependencies, and
# fcnlib itself is this checkout's, put on PYTHONPATH (absolute, so --directory elsewhere works too).
if any(str(m).lower().endswith("conda") for m in workflow.deployment_settings.deployment_method):
    os.environ.update(  # set for the jobs, not a variable the user must provide (no envvars:)
        PYTHONPATH=os.pathsep.join(p for p in (str(Path(workflow.basedir).resolve()), os.getenv("PYTHONPATH")) if p)
    )

SOURCES = config["sources"]
DEMO = config["source"] == "demo"
EXPERIMENTS = {name: fcncfg.experiment(config, name) for name in config["experiments"]}
USED_DATASETS = sorted({e["dataset"] for e in EXPERIMENTS.values()})
# The authors' released caffemodels to score (config `released:`; facts per model in fcnlib.released).
RELEASED = {e["name"]: e for e in fcnreleased.entries(config)}
ARCHIVE_SOURCES = [s for s, v in SOURCES.items() if re.search(r"\.(tar|tgz|tar\.gz|zip)$", v["filename"])]

# Code hashes as params: editing a fcnlib module reruns exactly the rules that use it.
CODE = {
    "download": fcncfg.code_hash("download.py", "httpfetch.py"),
    # the demo's ImageNet/released stand-ins are built with fcnlib's backbones and written with its name maps
    "demo": fcncfg.code_hash(
        "demo/",
        "scenes.py",
        "hha.py",
        "hha_geometry.py",
        "released.py",
        "models/vgg.py",
        "models/alexnet.py",
        "models/googlenet.py",
        "models/surgery.py",
        "models/caffe.py",
        "models/preprocessing.py",
    ),
    "extract": fcncfg.code_hash("archive.py"),
    "prepare": fcncfg.code_hash("data/", "parallel.py"),
    "hha": fcncfg.code_hash("hha.py", "hha_geometry.py", "parallel.py", "allocator.py"),
    "weights": fcncfg.code_hash("models/"),
    "train": fcncfg.code_hash(
        "train/",
        "models/",
        "data/",
        "metrics.py",
        "evaluate.py",
        "fast.py",
        "allocator.py",
        "inference.py",
        "modalities.py",
        "precision.py",
        "determinism.py",
        "finite.py",
        "loader.py",
    ),
    "evaluate": fcncfg.code_hash(
        "evaluate.py",
        "inference.py",
        "modalities.py",
        "metrics.py",
        "models/",
        "data/",
        "fast.py",
        "allocator.py",
        "precision.py",
        "determinism.py",
    ),
    "report": fcncfg.code_hash("figures.py", "tables.py", "paper.py", "evaluate.py", "inference.py", "models/"),
    "released": fcncfg.code_hash("released.py", "paper.py", "inference.py", "models/"),
}

# Download/extract/prepare/HHA jobs run before trainings, so every dataset is ready before the
# trainings share the cores (otherwise a late dataset's training chain ends the run alone).
DATA_FIRST = 50


wildcard_constraints:
    dataset="|".join(USED_DATASETS),
    exp="|".join(re.escape(e) for e in EXPERIMENTS),
    file="|".join(re.escape(v["filename"]) for v in SOURCES.values()),
    source="|".join(re.escape(s) for s in ARCHIVE_SOURCES),
    backbone="vgg16|alexnet|googlenet",
    split="[A-Za-z0-9_]+",
    name="|".join(re.escape(n) for n in RELEASED) or "none",
    group="|".join(re.escape(g) for kind in config.get("figures", {}).values() for g in kind) or "none",


def raw(source):
    return f"data/raw/{SOURCES[source]['filename']}"


def source_of_file(filename):
    for name, spec in SOURCES.items():
        if spec["filename"] == filename:
            return name
    raise WorkflowError(f"no source in the config downloads to {filename}")


def extracted(source):
    return f"data/extracted/{source}"


def dataset_json(dataset):
    return f"data/{dataset}/dataset.json"


def exp_dir(exp):
    return fcncfg.experiment_dir(EXPERIMENTS[exp]["dataset"], exp)


def weights(exp):
    return f"{exp_dir(exp)}/weights.pt"


def metrics(exp, split):
    return f"{exp_dir(exp)}/{split}/metrics.json"


def released_metrics(name):
    """Our score of one released caffemodel on its dataset's validation split."""
    return f"results/released/{name}/{RELEASED[name]['split']}/metrics.json"


def dataset_inputs(dataset, modalities):
    """dataset.json plus the HHA images when a net reads them."""
    inputs = [dataset_json(dataset)]
    if "hha" in modalities:
        inputs.append(f"data/{dataset}/hha/manifest.json")
    return inputs


def evaluations():
    """(experiment, split) pairs to score: each experiment's eval splits and every table cell."""
    pairs = {(name, s) for name, e in EXPERIMENTS.items() for s in e["eval_splits"]}
    pairs |= {(r["experiment"], r["split"]) for r in fcncfg.table_rows(config) if "experiment" in r}
    return sorted(pairs)


def timed_experiments():
    """Table 1 and 3 report forward time."""
    return sorted(
        {r["experiment"] for r in fcncfg.table_rows(config) if "experiment" in r and r["table"] in ("table1", "table3")}
    )


def figure_targets():
    figs = config.get("figures", {})
    out = [f"results/figures/fig4_{group}.png" for group in figs.get("fig4", {})]
    out += [
        f"results/figures/curves_{group}{t}.png" for group in figs.get("learning_curves", {}) for t in ("", "_time")
    ]
    out += [f"results/figures/per_class_{d}.png" for d in USED_DATASETS]
    return out


def train_inputs(wildcards):
    exp = EXPERIMENTS[wildcards.exp]
    inputs = {"data": dataset_inputs(exp["dataset"], exp["modalities"])}
    parents = fcncfg.parents(config, wildcards.exp)
    if parents:
        inputs["init"] = [weights(p) for p in parents]
    else:
        inputs["init"] = [f"data/weights/{exp['backbone']}.pt"]
    return inputs


def train_runtime(wildcards):
    iters = EXPERIMENTS[wildcards.exp]["iterations"]
    return int(30 + iters / 1000 * config["resources"]["minutes_per_1k_iter"])


def train_gpus(exp):
    """GPUs (= data-parallel processes) of one training job: the experiment's `gpu`, else resources.gpu."""
    return fcncfg.gpus(config, exp)


# DVC's per-run files (workflow/rules/versioning.smk)
def summary_files():
    return {
        "metrics": [f"results/metrics/{e}/{s}.json" for e, s in evaluations()],
        "loss": [f"results/curves/loss/{e}.tsv" for e in EXPERIMENTS],
        "val": [f"results/curves/val/{e}.tsv" for e in EXPERIMENTS],
    }


def summary_targets():
    return [f for files in summary_files().values() for f in files]
