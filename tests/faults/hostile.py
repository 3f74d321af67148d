"""Shared helpers for the hostile-input tests: run `fcn ...` as a user would and read its one error line,
and list every file under a folder (to prove nothing landed outside a target)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fcn(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`fcn ARGS...` in a subprocess (`python -m fcnlib`: what the entry point runs), stdout and stderr apart."""
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "fcnlib", *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


def one_error(r: subprocess.CompletedProcess) -> str:
    """The CLI must exit 2 with exactly one line on stderr, `error: ...`, and no traceback."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errs = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errs) == 1, r.stderr[-3000:]
    return errs[0]


def files_under(root: Path) -> set[str]:
    """Every path below root (links not followed), relative."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out
