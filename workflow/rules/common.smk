# Config validation, path helpers and wildcard constraints (no rules here).
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from fcnlib.facts import datasets as registry
from fcnlib.files import layout
from fcnlib.facts import released as fcnreleased
from fcnlib.pipeline import codehash as fcncode
from fcnlib.pipeline import config as fcncfg
from fcnlib.runtime.extras import installed
from fcnlib.errors import ConfigError

# Config = config/config.yaml unless --configfile gives a complete one (with `experiments`, e.g.
# config/demo.yaml), which replaces it; a partial file or --config pairs (`training: {threads: 4}`) are
# deep-merged over it (fcnlib.pipeline.config.compose_config). No Snakefile `configfile:`: it would merge the paper's
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

# Local jobs run on this box: a device it lacks (`device: cuda` without CUDA) is one line now, not a failure
# inside every job (cluster jobs check it where they start: fcnlib.runtime.compute.check_device / resolve_runtime).
# Only a device other than cpu/auto (which always exist) needs the check, and torch (~1 s of every start).
if workflow.global_resources["_nodes"].value is None and str(config["device"]).strip().lower() not in ("cpu", "auto"):
    from fcnlib.runtime.compute import check_device

    try:
        check_device(config["device"], f"{_CONFIG_SOURCE}: at 'device'")
    except ConfigError as _e:
        raise WorkflowError(f"invalid configuration — {_e}") from None

# Local runs: at most as many GPU jobs at once as this box has GPUs (1 on a CPU box), so
# `snakemake --cores 8 results/tables.md` is safe without `--resources gpu=…`; each job then claims its
# own GPU (fcnlib.runtime.devices). An explicit --resources gpu=N wins; cluster executors are not capped (the
# executor is not known yet while the Snakefile is parsed; `_nodes`, i.e. --jobs, is set only for them).
if workflow.global_resources["_nodes"].value is None and "gpu" not in workflow.global_resources:
    from fcnlib.runtime.devices import visible_gpu_count

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
# Every dataset of the config, built-in or a folder of your own (fcnlib.facts.datasets: what each is, how to prepare it)
DATASETS = registry.check_config(config, _CONFIG_SOURCE)
# the run's lead net (fcncfg.lead_experiment): its training is replayed into the run's DVCLive record
LEAD = fcncfg.lead_experiment(config)
# The authors' released caffemodels to score (config `released:`; facts per model in fcnlib.eval.released).
RELEASED = {e["name"]: e for e in fcnreleased.entries(config)}
# device, compute dtype and memory format of scoring, timing and figure jobs (fcnlib.runtime.compute.resolve_runtime)
RUNTIME = fcncfg.runtime_settings(config)
ARCHIVE_SOURCES = [s for s, v in SOURCES.items() if re.search(r"\.(tar|tgz|tar\.gz|zip)$", v["filename"])]


def add_code_hashes(rules):
    """Give each script job the hash of its script's import closure in fcnlib as the param `code`
    (fcnlib.pipeline.codehash: derived from the imports, never listed), so Snakemake's params rerun trigger reruns
    exactly the jobs whose code an edit touches; a "module:function" param `entry` (the prepare rules')
    adds that module's closure. Called once, after the last rule is defined (Snakefile)."""
    root = fcncode.package_root(workflow.basedir)
    for r in rules:
        if r.script:
            script = Path(r.basedir.get_path_or_uri(secret_free=True)) / r.script
            entry = dict(r.params.items()).get("entry")
            modules = (entry.partition(":")[0],) if isinstance(entry, str) else ()
            r.set_params(code=fcncode.script_hash(script.resolve(), root, modules=modules))


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
    return layout.raw(SOURCES[source]["filename"])


def source_of_file(filename):
    for name, spec in SOURCES.items():
        if spec["filename"] == filename:
            return name
    raise WorkflowError(f"no source in the config downloads to {filename}")


def extracted(source):
    return layout.extracted(source)


def dataset_json(dataset):
    return layout.dataset_json(dataset)


def weights(exp):
    return layout.weights(EXPERIMENTS[exp]["dataset"], exp)


def train_log(exp):
    return layout.train_log(EXPERIMENTS[exp]["dataset"], exp)


def metrics(exp, split):
    return layout.metrics(EXPERIMENTS[exp]["dataset"], exp, split)


def timing(exp):
    return layout.timing(EXPERIMENTS[exp]["dataset"], exp)


def released_metrics(name):
    """Our score of one released caffemodel on its dataset's validation split."""
    return layout.released_metrics(name, RELEASED[name]["split"])


def dataset_inputs(dataset, modalities):
    """{dataset_json, derived modalities' markers (HHA) when a net reads them}; scripts take input.dataset_json."""
    inputs = {"dataset_json": dataset_json(dataset)}
    for m in modalities:
        if m in registry.DERIVED_MODALITIES:
            inputs[m] = layout.derived_modality(dataset, registry.DERIVED_MODALITIES[m])
    return inputs


def prepare_inputs(dataset):
    """The prepare function's file arguments (fcnlib.facts.datasets.DatasetSpec.inputs) and its downloaded split
    lists (`list_<split>`), as named inputs of the dataset's prepare rule."""
    spec = DATASETS[dataset]
    where = {"extracted": extracted, "raw": raw, "path": str}
    inputs = {arg: where[i.kind](i.ref) for arg, i in spec.inputs.items()}
    for split, src in registry.split_list_sources(dataset, SOURCES).items():
        inputs[f"list_{split}"] = raw(src)
    return inputs


def evaluations():
    """(experiment, split) pairs to score: each experiment's eval splits and every table cell."""
    pairs = {(name, s) for name, e in EXPERIMENTS.items() for s in e["eval_splits"]}
    pairs |= {(r["experiment"], r["split"]) for r in fcncfg.table_rows(config) if "experiment" in r}
    return sorted(pairs)


def table_records():
    """Each table row (fcnlib.pipeline.config.table_rows) with the files its numbers are read from, all inputs of the
    tables rule: `metrics`, and `timing` for the experiments Tables 1 and 3 time."""
    timed = set(timed_experiments())
    return [
        (
            dict(
                r,
                metrics=metrics(r["experiment"], r["split"]),
                timing=timing(r["experiment"]) if r["experiment"] in timed else None,
            )
            if "experiment" in r
            else r
        )
        for r in fcncfg.table_rows(config)
    ]


def timed_experiments():
    """Table 1 and 3 report forward time."""
    return sorted(
        {r["experiment"] for r in fcncfg.table_rows(config) if "experiment" in r and r["table"] in ("table1", "table3")}
    )


def figure_targets():
    figs = config.get("figures", {})
    out = [layout.fig4(group) for group in figs.get("fig4", {})]
    out += [layout.curves(group, t) for group in figs.get("learning_curves", {}) for t in ("", "_time")]
    out += [layout.per_class(d) for d in USED_DATASETS]
    return out


def train_inputs(wildcards):
    exp = EXPERIMENTS[wildcards.exp]
    inputs = dataset_inputs(exp["dataset"], exp["modalities"])
    parents = fcncfg.parents(config, wildcards.exp)
    inputs["init"] = [weights(p) for p in parents] if parents else [layout.backbone_weights(exp["backbone"])]
    return inputs


def train_runtime(wildcards):
    iters = EXPERIMENTS[wildcards.exp]["iterations"]
    return int(30 + iters / 1000 * config["resources"]["minutes_per_1k_iter"])


def train_gpus(exp):
    """GPUs (= data-parallel processes) of one training job: the experiment's `gpu`, else resources.gpu."""
    return fcncfg.gpus(config, exp)


# DVC's per-run files (workflow/rules/versioning.smk)
def summary_evaluations():
    """{label: (experiment, split)}: each dataset's headline net (fcncfg.headline_experiments) on its validation
    split (else its first evaluated one): one `dvc exp show` column per dataset."""
    out = {}
    for e in fcncfg.headline_experiments(config).values():
        exp = EXPERIMENTS[e]
        splits = exp["eval_splits"]
        if splits:
            s = exp["val_split"] if exp["val_split"] in splits else splits[0]
            out[e if s == exp["val_split"] else f"{e}@{s}"] = (e, s)
    return out


def summary_files():
    return {"metrics": layout.SUMMARY_METRICS, "loss": layout.curve_table("loss"), "val": layout.curve_table("val")}


def live_record_target():
    """[the run's DVCLive record] when DVCLive is installed and the run evaluates a net, else []."""
    return [layout.SUMMARY_LIVE] if LEAD and installed("dvclive") else []


def summary_targets():
    return list(summary_files().values()) + live_record_target()
