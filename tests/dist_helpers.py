"""Worker targets for tests/test_distributed.py (imported by the launcher's workers via PYTHONPATH)."""

from __future__ import annotations

import os
import signal

import torch

from fcnlib import train as T


def train_term_at(kill_at: int, **kwargs):
    """fcnlib.train.train, but rank 0 sends SIGTERM to the launcher after iteration `kill_at` — as
    Snakemake (Ctrl-C) or SLURM (scancel, preemption) would; the launcher forwards it to every rank."""
    torch.set_num_threads(1)
    if kill_at and os.environ.get("RANK") == "0":
        def hook(it):
            if it == kill_at:
                os.kill(os.getppid(), signal.SIGTERM)
        T._iteration_hook = hook
    return T.train(**kwargs)
