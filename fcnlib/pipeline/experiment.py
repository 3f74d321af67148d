"""The train rule's body (workflow/scripts/train.py), which `fcn train EXPERIMENT` runs too: one resolved
experiment trained into its declared outputs, resuming from state kept beside them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fcnlib.errors import ConfigError
from fcnlib.files.io import atomic_write


def train_to(cfg: dict[str, Any], out_weights: str | os.PathLike, out_log: str | os.PathLike,
             device: str = "auto", gpus: int = 0) -> bool:
    """Train `cfg` (fcnlib.pipeline.config.train_config) into `out_weights` + `out_log` (JSONL), in 1 or `gpus`
    data-parallel processes (fcnlib.train.distributed.run_training: the same call for 1 and N).

    Resume state sits beside the outputs in `<out dir>/.train/` (not an output: it survives a killed job,
    so rerunning resumes); the log is copied out and the weights moved into place last. Returns False in
    a rank > 0 started by torchrun/srun around the caller (rank 0 moves the outputs).
    """
    from fcnlib.train.distributed import run_training

    out = Path(out_weights)
    work = out.parent / ".train"
    work.mkdir(parents=True, exist_ok=True)
    if not run_training(dict(cfg), work / "weights.pt", work / "resume.pt", work / "log.jsonl", device=device,
                        gpus=gpus):
        return False
    with open(work / "log.jsonl", "rb") as src, atomic_write(out_log, "wb") as dst:
        shutil.copyfileobj(src, dst)
    (work / "weights.pt").replace(out)  # declared weights last
    return True


def with_inputs(cfg: dict[str, Any], dataset_json: str | os.PathLike,
                init: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """`cfg` reading the files a rule declares instead of the paths config resolution wrote into it: its
    dataset.json and its initial weights (one file; one per member of a late fusion). The config hash stays
    the resolved one."""
    spec = dict(cfg["init"])
    paths = [str(p) for p in init]
    want = len(spec["paths"]) if "paths" in spec else 1
    if len(paths) != want:
        raise ConfigError(f"train config of {cfg['experiment']}: init {spec['kind']} takes {want} weights "
                          f"file(s), the rule gives {len(paths)} ({paths}); fix the train rule's input.init")
    spec.update({"paths": paths} if "paths" in spec else {"path": paths[0]})
    return {**cfg, "dataset_json": str(dataset_json), "init": spec}
