"""Which optional extras (pyproject's `[dvc]`, `[tensorboard]`, ...) this environment has."""

from __future__ import annotations

import importlib.util


def installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (dvclive imports DVC: seconds); a module
    blocked in sys.modules (None) counts as absent."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ValueError, ImportError):  # ValueError: sys.modules[module] is None or has no spec
        return False
