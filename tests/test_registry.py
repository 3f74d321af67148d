"""The dataset registry (fcnlib.facts.datasets) and the path layout (fcnlib.files.layout), each defined once: the config
schema's dataset and modality lists are generated from the registry, every user reads the one modality table,
the trainer takes the files its rule declares, and the Snakefile's imports stay free of torch."""

import subprocess
import sys
from pathlib import Path

import pytest

from fcnlib import train as T
from fcnlib.data import dataset
from fcnlib.data.prepare import prepare_dataset
from fcnlib.errors import ConfigError
from fcnlib.facts import datasets as registry
from fcnlib.files import layout
from fcnlib.models.meta import ModelMeta, primary_head
from fcnlib.pipeline import config as fcncfg
from fcnlib.pipeline.experiment import with_inputs

ROOT = Path(__file__).resolve().parents[1]


def test_schema_lists_are_generated_from_the_registry():
    schema = fcncfg.load_schema()
    assert schema["$defs"]["modality"]["enum"] == list(registry.NET_MODALITIES)
    assert list(schema["properties"]["datasets"]["properties"]) == list(registry.REGISTRY)
    # the schema file keeps no hand-written copy of either list that could go stale
    text = fcncfg.SCHEMA_PATH.read_text()
    for name in registry.REGISTRY:
        assert f" {name}:" not in text and f"[{name}," not in text and f" {name}]" not in text, name


def test_a_registry_entry_is_all_the_schema_needs(monkeypatch: pytest.MonkeyPatch):
    """A dataset added to the registry validates as a built-in one (its `datasets:` entry and experiments)."""
    spec = registry.DatasetSpec("toy", {"sem": ("a", "b")}, "toy_module:prepare_toy")
    monkeypatch.setitem(registry.REGISTRY, "toy", spec)
    cfg = fcncfg.load_yaml(ROOT / "config" / "test.yaml")
    cfg["datasets"]["toy"] = {"train_split": "train", "val_split": "val"}
    cfg["experiments"]["toy-fcn32s"] = {"dataset": "toy", "variant": "fcn32s"}
    cfg["recipes"]["demo"]["by_dataset"] = {"toy": {"iterations": 2}}
    fcncfg.validate_config(cfg, source="cfg")
    assert fcncfg.train_config(cfg, "toy-fcn32s")["arch"]["num_classes"] == 2


def test_references_to_datasets_are_checked():
    cfg = fcncfg.load_yaml(ROOT / "config" / "test.yaml")
    cfg["experiments"]["voc-fcn32s"]["modalities"] = ["hha"]  # PASCAL holds no HHA
    with pytest.raises(ConfigError, match=r"at 'experiments\.voc-fcn32s\.modalities': dataset 'pascal' has no"):
        fcncfg.validate_config(cfg, source="cfg")
    cfg = fcncfg.load_yaml(ROOT / "config" / "test.yaml")
    cfg["recipes"]["demo"]["by_dataset"] = {"kitti": {"iterations": 2}}
    with pytest.raises(ConfigError, match=r"at 'recipes\.demo\.by_dataset\.kitti': not a dataset"):
        fcncfg.validate_config(cfg, source="cfg")


def test_every_user_reads_the_one_modality_table():
    assert dataset.MODALITY_CHANNELS is registry.MODALITY_CHANNELS
    assert fcncfg.MODALITY_CHANNELS == T.MODALITY_CHANNELS == {"rgb": 3, "hha": 3, "depth": 1}
    assert ModelMeta({"modalities": ["rgb", "hha", "depth"]}).input_channels == 7
    assert ModelMeta({"modalities": ["rawdepth"]}).input_channels == 1
    assert ModelMeta({}).input_channels == 3  # a file from before the key: RGB


def test_primary_head_is_sem_else_the_first():
    assert primary_head({"sem": 33, "geo": 3}) == "sem"
    assert primary_head(["geo", "sem"]) == "sem"
    assert primary_head(["labels"]) == "labels"


def test_config_resolution_uses_the_layout():
    cfg = fcncfg.load_yaml(ROOT / "config" / "test.yaml")
    t = fcncfg.train_config(cfg, "voc-fcn16s")
    assert t["dataset_json"] == layout.dataset_json("pascal")
    assert t["init"] == {"kind": "staged", "path": layout.weights("pascal", "voc-fcn32s")}
    fused = fcncfg.train_config(cfg, "nyud-rgbhha-fcn32s")["init"]
    assert fused["paths"] == [layout.weights("nyud", "nyud-rgb-fcn32s"), layout.weights("nyud", "nyud-hha-fcn32s")]


def test_the_trainer_takes_the_rules_declared_inputs():
    cfg = fcncfg.train_config(fcncfg.load_yaml(ROOT / "config" / "test.yaml"), "nyud-rgbhha-fcn32s")
    got = with_inputs(cfg, "elsewhere/dataset.json", ["a.pt", "b.pt"])
    assert got["dataset_json"] == "elsewhere/dataset.json" and got["init"]["paths"] == ["a.pt", "b.pt"]
    assert got["config_hash"] == cfg["config_hash"] and cfg["init"]["paths"][0].startswith("results/")
    with pytest.raises(ConfigError, match="init late_fusion takes 2 weights file"):
        with_inputs(cfg, "d.json", ["a.pt"])
    staged = fcncfg.train_config(fcncfg.load_yaml(ROOT / "config" / "test.yaml"), "voc-fcn8s")
    assert with_inputs(staged, "d.json", ["x.pt"])["init"] == {"kind": "staged", "path": "x.pt"}


def test_prepare_dispatch_passes_lists_only_to_steps_that_take_them(tmp_path: Path):
    (tmp_path / "toyprep.py").write_text(
        "def prepare_toy(out_dir, raw_dir, *, source, workers, **kw):\n"
        "    return {'out': str(out_dir), 'raw': str(raw_dir), 'kw': kw, 'source': source}\n")
    sys.path.insert(0, str(tmp_path))
    try:
        got = prepare_dataset("toyprep:prepare_toy", tmp_path / "o", {"raw_dir": "r", "list_test": "t.txt"},
                              options={"n": 1}, takes_lists=True, source="demo")
        assert got["kw"] == {"n": 1, "lists": {"test": Path("t.txt")}} and got["source"] == "demo"
        assert prepare_dataset("toyprep:prepare_toy", tmp_path / "o", {"raw_dir": "r"})["kw"] == {}
        assert prepare_dataset("toyprep:prepare_toy", tmp_path / "o", {"raw_dir": "r"}, takes_lists=True)["kw"] == {
            "lists": None}
    finally:
        sys.path.remove(str(tmp_path))
    with pytest.raises(ConfigError, match=r"'toyprep:nope' \(fcnlib\.facts\.datasets\) is not an importable"):
        prepare_dataset("toyprep:nope", tmp_path / "o", {})


def test_the_snakefile_imports_no_torch():
    code = ("import sys, fcnlib.pipeline.config, fcnlib.facts.datasets, fcnlib.files.layout; "
            "numpy = 'numpy' in sys.modules; "
            "import fcnlib.facts.released; sys.exit(numpy or 'torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
