"""Snakemake runs inside a DVC stage's folder are recorded in DVC, so `dvc exp run` cannot delete them.

`dvc exp run` first checks out every stage's outs as `dvc.lock` records them, with force: whatever sits in
an out folder but is not recorded there (a `make demo` or a hand-run `snakemake --directory runs/demo`,
i.e. the pipeline run without `dvc repro`) is deleted. The Snakefile's onsuccess/onerror hooks call
`record_run()`, which finds the DVC stage whose outs lie under the working directory (`runs/demo` →
`dvc.yaml:demo`, `runs/paper` → `paper/dvc.yaml:paper`) and runs `dvc commit` on it: the files are then in
the DVC cache and the workspace `dvc.lock`, and DVC's checkout restores rather than deletes them.

Nothing happens under `dvc repro` / `dvc exp run` (DVC records its own stage: DVC_STAGE is set), outside a
DVC repository, in a folder no stage owns, or when DVC is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from fcnlib.errors import FcnError
from fcnlib.pipeline.config import load_yaml
from fcnlib.runtime.extras import installed


def dvc_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding a `.dvc` directory."""
    for d in (start, *start.parents):
        if (d / ".dvc").is_dir():
            return d
    return None


def _outs(stage: dict) -> Iterator[str]:
    for key in ("outs", "metrics", "plots"):
        for o in stage.get(key) or []:
            yield next(iter(o)) if isinstance(o, dict) else str(o)


def owning_stage(root: Path, workdir: Path) -> str | None:
    """`<dvc.yaml>:<stage>` (relative to `root`) of the stage whose outs all lie in `workdir` (the folder a
    stage's Snakemake runs in: the outs' common parent), or None.

    Looks at the root's dvc.yaml and those one folder down (the project keeps the paper's in paper/)."""
    workdir = workdir.resolve()
    for dvcfile in sorted([root / "dvc.yaml", *root.glob("*/dvc.yaml")]):
        if not dvcfile.is_file():
            continue
        try:
            doc = load_yaml(dvcfile) or {}
        except FcnError:  # an unreadable dvc.yaml owns nothing here; DVC itself reports it
            continue
        for name, stage in (doc.get("stages") or {}).items():
            if not isinstance(stage, dict) or "foreach" in stage or "matrix" in stage:
                continue
            wdir = (dvcfile.parent / str(stage.get("wdir", "."))).resolve()
            outs = [(wdir / out).resolve() for out in _outs(stage)]
            home = outs[0].parent if len(outs) == 1 else Path(os.path.commonpath(outs)) if outs else None
            if home == workdir:
                return f"{dvcfile.relative_to(root)}:{name}"
    return None


def record_run(workdir: str | os.PathLike | None = None) -> str | None:
    """`dvc commit` the stage owning `workdir` (default: the current directory); returns the stage, or None
    when there is nothing to record. A failed commit is one line on stderr (with the command to run), never
    an error: the Snakemake run itself succeeded."""
    if os.environ.get("DVC_STAGE"):  # DVC is running this Snakemake: it records the stage itself
        return None
    wd = Path(workdir or Path.cwd()).resolve()
    root = dvc_root(wd)
    if root is None or not installed("dvc"):
        return None
    stage = owning_stage(root, wd)
    if stage is None:
        return None
    cmd = [sys.executable, "-m", "dvc", "commit", "--force", "--quiet", stage]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if r.returncode != 0:
        why = (r.stderr or r.stdout).strip().splitlines()
        print(f"fcn: could not record {wd} in DVC ({why[-1] if why else f'exit {r.returncode}'}); before "
              f"`dvc exp run`, run `dvc commit {stage}` in {root} or `dvc exp run` deletes what is not recorded",
              file=sys.stderr)
        return None
    print(f"fcn: recorded {wd.relative_to(root)} in DVC ({stage}, workspace dvc.lock); commit dvc.lock with git "
          f"to keep it", file=sys.stderr)
    return stage
