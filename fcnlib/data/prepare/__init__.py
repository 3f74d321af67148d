"""The one prepare step the workflow runs: a dataset's prepare function (fcnlib.facts.datasets.DatasetSpec.prepare)
called with the rule's named inputs, so every dataset — the paper's and folders declared in a config — is
prepared by the same rule and script."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fcnlib.errors import ConfigError

LIST_PREFIX = "list_"  # inputs named list_<split> are the split lists


def prepare_dataset(entry: str, out_dir: str | os.PathLike, inputs: Mapping[str, str | os.PathLike], *,
                    options: Mapping[str, Any] | None = None, takes_lists: bool = False, source: str = "real",
                    workers: int | None = None) -> Any:
    """Call `entry` ("module:function") as `function(out_dir, **file inputs, **options, source=, workers=)`,
    plus `lists={split: file}` (None when none is given) if it takes split lists."""
    module, _, name = entry.partition(":")
    try:
        func = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"prepare entry {entry!r} (fcnlib.facts.datasets) is not an importable module:function; "
                          f"fix the dataset's registry entry") from None
    files = {k: Path(v) for k, v in inputs.items() if not k.startswith(LIST_PREFIX)}
    lists = {k[len(LIST_PREFIX):]: Path(v) for k, v in inputs.items() if k.startswith(LIST_PREFIX)}
    extra: dict[str, Any] = {"lists": lists or None} if takes_lists else {}
    return func(Path(out_dir), **files, **dict(options or {}), **extra, source=source, workers=workers)
