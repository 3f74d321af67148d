"""The path layout of a pipeline folder, defined once: where each file the workflow reads or writes lives.

Paths are relative to the workdir (Snakemake's --directory). The rules build their outputs with these
functions, passing wildcard placeholders (`weights("{dataset}", "{exp}")`); config resolution, the
`fcn` commands and the reports call them with names. Workflow scripts read only the paths their rule
declares (snakemake.input/output), never these functions.

No torch import: the Snakefile imports this at parse time.
"""

from __future__ import annotations

DATA = "data"
RESULTS = "results"

TABLES_MD = f"{RESULTS}/tables.md"
TABLES_JSON = f"{RESULTS}/tables.json"
RELEASED_MD = f"{RESULTS}/released.md"
RELEASED_JSON = f"{RESULTS}/released.json"
#: the Markdown pages rendered as HTML for the Snakemake report's landing page (rule html_page)
TABLES_HTML = f"{RESULTS}/tables.html"
RELEASED_HTML = f"{RESULTS}/released.html"
#: what `dvc metrics show` / `dvc exp show` read: each dataset's headline net's validation mean IU and the run's source
SUMMARY_METRICS = f"{RESULTS}/metrics.json"
#: the run's DVCLive record: the lead net's training replayed (metrics.json, plots/metrics/, params.yaml)
SUMMARY_LIVE = f"{RESULTS}/dvclive"
DEMO_MANIFEST = f"{DATA}/demo_src/manifest.json"


# --- data/ ----------------------------------------------------------------------------------------
def raw(filename: str) -> str:
    """A downloaded file."""
    return f"{DATA}/raw/{filename}"


def extracted(source: str) -> str:
    """The extracted tree of one archive source."""
    return f"{DATA}/extracted/{source}"


def dataset_dir(dataset: str) -> str:
    """A prepared dataset's folder (dataset.json, labels, split lists, derived modalities)."""
    return f"{DATA}/{dataset}"


def dataset_json(dataset: str) -> str:
    """A prepared dataset's description (ARCHITECTURE.md "Datasets on disk"); written last."""
    return f"{dataset_dir(dataset)}/dataset.json"


def derived_modality(dataset: str, marker: str) -> str:
    """The completion marker of a modality a later rule derives from the prepared dataset
    (fcnlib.facts.datasets.DERIVED_MODALITIES, e.g. hha/manifest.json)."""
    return f"{dataset_dir(dataset)}/{marker}"


def backbone_weights(backbone: str) -> str:
    """An ImageNet classifier converted to fully convolutional weights."""
    return f"{DATA}/weights/{backbone}.pt"


# --- results/<dataset>/<experiment>/ --------------------------------------------------------------
def experiment_dir(dataset: str, exp: str) -> str:
    """The results folder of one experiment."""
    return f"{RESULTS}/{dataset}/{exp}"


def weights(dataset: str, exp: str) -> str:
    return f"{experiment_dir(dataset, exp)}/weights.pt"


def train_log(dataset: str, exp: str) -> str:
    """The training log (JSON lines: loss per logged step, validation metrics)."""
    return f"{experiment_dir(dataset, exp)}/log.jsonl"


def metrics(dataset: str, exp: str, split: str) -> str:
    return f"{experiment_dir(dataset, exp)}/{split}/metrics.json"


def timing(dataset: str, exp: str) -> str:
    return f"{experiment_dir(dataset, exp)}/timing.json"


# --- results/released/<name>/ ---------------------------------------------------------------------
def released_weights(name: str) -> str:
    """One of the authors' released caffemodels, converted."""
    return f"{RESULTS}/released/{name}/weights.pt"


def released_metrics(name: str, split: str) -> str:
    return f"{RESULTS}/released/{name}/{split}/metrics.json"


# --- figures and the files DVC reads ----------------------------------------------------------------
def fig4(group: str) -> str:
    return f"{RESULTS}/figures/fig4_{group}.png"


def curves(group: str, axis: str = "") -> str:
    """Learning curves of one group against iterations (`axis` "") or wall time ("_time")."""
    return f"{RESULTS}/figures/curves_{group}{axis}.png"


def per_class(dataset: str) -> str:
    return f"{RESULTS}/figures/per_class_{dataset}.png"


def curve_table(kind: str) -> str:
    """Every experiment's `loss` or `val` curve in one long TSV (dvc plots; a column names the experiment)."""
    return f"{RESULTS}/curves/{kind}.tsv"
