"""The train rule's body (workflow/scripts/train.py), which `fcn train EXPERIMENT` runs too: one resolved
experiment trained into its declared outputs, resuming from state kept beside them."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fcnlib.errors import ConfigError
from fcnlib.files.io import atomic_write
from fcnlib.runtime import devices as fcndev
from fcnlib.runtime.compute import check_device
from fcnlib.train import distributed, train


def run_training(cfg: Mapping[str, Any], out_weights: str | os.PathLike, resume_path: str | os.PathLike,
                 log_path: str | os.PathLike, device: str = "auto", gpus: int = 0,
                 live_dir: str | os.PathLike | None = None, tensorboard_dir: str | os.PathLike | None = None) -> bool:
    """`fcnlib.train.train` in the right number of processes (the same call for 1 and N GPUs), each on its
    own claimed GPU.

    * Already one rank of a group (torchrun, or an srun step of several tasks): train as that rank.
    * A SLURM batch allocation of several tasks (profiles/slurm, multi-node): `srun` the ranks.
    * Otherwise: claim `gpus` free GPUs of this box (fcnlib.runtime.devices; none on a CPU box or under SLURM,
      which has bound them already) and run max(1, gpus) ranks here — one in this process, or N workers.
    Exits with the workers' status (143 after a SIGTERM checkpoint) when it is not 0. Returns whether
    this process is rank 0 (the one that may move the outputs into place).
    """
    kwargs = {"cfg": dict(cfg), "out_weights": str(out_weights), "resume_path": str(resume_path),
              "log_path": str(log_path), "device": device,
              "live_dir": None if live_dir is None else str(live_dir),
              "tensorboard_dir": None if tensorboard_dir is None else str(tensorboard_dir)}
    w = distributed.world_from_env()
    if w.world > 1:
        train(**kwargs)
        return w.rank == 0
    n = max(1, int(gpus))
    tasks = distributed.slurm_job_tasks()
    if tasks > 1:
        if tasks != n:
            raise ConfigError(f"SLURM_NTASKS={tasks} but this net trains on gpu={n}: the update's batch is split "
                              f"by the config's GPU count; set the experiment's gpu (or resources.gpu) to {tasks} "
                              f"or the profile's tasks to {n}")
        print(f"fcn train: {tasks} SLURM tasks (srun), one rank each", file=sys.stderr)
        status = distributed.launch(tasks, "fcnlib.train:train", kwargs, spec_dir=Path(resume_path).parent, srun=True)
    else:
        with fcndev.claimed(n if str(device) != "cpu" else 0) as claim:
            devs = claim.devices(device)
            devs = devs * n if len(devs) == 1 else devs
            if claim.ids:
                print(f"fcn train: GPU(s) {claim.ids} claimed → {devs}", file=sys.stderr)
            if n == 1:
                train(**{**kwargs, "device": devs[0]})
                return True

            status = distributed.launch(n, "fcnlib.train:train", kwargs, devices=devs,
                            threads=max(1, torch.get_num_threads() // n))
    if status:
        raise SystemExit(status)
    return True


def train_to(cfg: dict[str, Any], out_weights: str | os.PathLike, out_log: str | os.PathLike,
             device: str = "auto", gpus: int = 0, tensorboard: bool = False) -> bool:
    """Train `cfg` (fcnlib.pipeline.config.train_config) into `out_weights` + `out_log` (JSONL), in 1 or `gpus`
    data-parallel processes (run_training: the same call for 1 and N).

    Resume state sits beside the outputs in `<out dir>/.train/` (not an output: it survives a killed job,
    so rerunning resumes); the log is copied out and the weights moved into place last. DVCLive files (when
    dvclive is installed) go to `<out dir>/dvclive/` as training runs, TensorBoard event files (with `tensorboard`) to
    `<out dir>/tensorboard/` (fcnlib.train.reporting). Returns False in
    a rank > 0 started by torchrun/srun around the caller (rank 0 moves the outputs).
    """
    check_device(device)  # a CUDA device on a CPU box: one line now, not from inside the trainer
    out = Path(out_weights)
    work = out.parent / ".train"
    work.mkdir(parents=True, exist_ok=True)
    if not run_training(dict(cfg), work / "weights.pt", work / "resume.pt", work / "log.jsonl", device=device,
                        gpus=gpus, live_dir=out.parent / "dvclive",
                        tensorboard_dir=out.parent / "tensorboard" if tensorboard else None):
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
    want = len(spec["paths"]) if "paths" in spec else 0 if spec["kind"] == "none" else 1
    if len(paths) != want:
        raise ConfigError(f"train config of {cfg['experiment']}: init {spec['kind']} takes {want} weights "
                          f"file(s), the rule gives {len(paths)} ({paths}); fix the train rule's input.init")
    if want:
        spec.update({"paths": paths} if "paths" in spec else {"path": paths[0]})
    return {**cfg, "dataset_json": str(dataset_json), "init": spec}
