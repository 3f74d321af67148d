"""Facts about the datasets that the config, the rules and the prepare steps share (plain data, no I/O)."""

from __future__ import annotations

from typing import Any

# The split lists a prepare step reads, per dataset, in order. A list downloaded on its own is the config
# source `<dataset>_<split>` (split_list_sources); a split without one is read from the extracted archive.
# prepare.smk, its scripts and fcnlib.data.nyud/siftflow all take the names from here, so no file name
# has to carry its split.
LIST_SPLITS: dict[str, tuple[str, ...]] = {"nyud": ("train", "val", "test"), "siftflow": ("trainval", "test")}


def split_list_source(dataset: str, split: str) -> str:
    """The config source that downloads `dataset`'s list of `split`."""
    return f"{dataset}_{split}"


def split_list_sources(dataset: str, sources: dict[str, Any]) -> dict[str, str]:
    """{split: source name} of those of `dataset`'s split lists that `sources` (the config's) downloads."""
    names = {s: split_list_source(dataset, s) for s in LIST_SPLITS[dataset]}
    return {s: n for s, n in names.items() if n in sources}
