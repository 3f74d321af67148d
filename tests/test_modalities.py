"""Modalities and the primary head, each defined once (fcnlib.facts.modalities, fcnlib.eval.inference.primary_head)
and agreeing with the config schema and the trainer."""

from pathlib import Path

import yaml

from fcnlib import train as T
from fcnlib.data import dataset
from fcnlib.eval.inference import primary_head
from fcnlib.facts.modalities import MODALITY_CHANNELS, NET_MODALITIES
from fcnlib.models.meta import ModelMeta
from fcnlib.pipeline import config as fcncfg

ROOT = Path(__file__).resolve().parents[1]


def test_schema_modality_enum_is_the_net_modalities():
    schema = yaml.safe_load((ROOT / "fcnlib" / "pipeline" / "config.schema.yaml").read_text())
    assert schema["$defs"]["modality"]["enum"] == list(NET_MODALITIES)


def test_every_user_reads_the_one_table():
    assert dataset.MODALITY_CHANNELS is MODALITY_CHANNELS
    assert fcncfg.MODALITY_CHANNELS == T.MODALITY_CHANNELS == {"rgb": 3, "hha": 3, "depth": 1}
    assert ModelMeta({"modalities": ["rgb", "hha", "depth"]}).input_channels == 7
    assert ModelMeta({"modalities": ["rawdepth"]}).input_channels == 1
    assert ModelMeta({}).input_channels == 3  # a file from before the key: RGB


def test_primary_head_is_sem_else_the_first():
    assert primary_head({"sem": 33, "geo": 3}) == "sem"
    assert primary_head(["geo", "sem"]) == "sem"
    assert primary_head(["labels"]) == "labels"


def test_schema_dataset_lists_are_dataset_heads():
    """README's "Adding a dataset": DATASET_HEADS is the registry; the schema's three dataset lists must equal it."""
    schema = yaml.safe_load((ROOT / "fcnlib" / "pipeline" / "config.schema.yaml").read_text())
    lists = [list(schema["properties"]["datasets"]["properties"])]  # the datasets: section
    lists += [d["enum"] for d in _find(schema, "dataset") if isinstance(d, dict) and "enum" in d]  # experiments
    lists += [b["propertyNames"]["enum"] for b in _find(schema, "by_dataset")]  # recipe overrides
    assert len(lists) == 3, lists
    for names in lists:
        assert sorted(names) == sorted(fcncfg.DATASET_HEADS)


def _find(obj, key):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _find(v, key)
