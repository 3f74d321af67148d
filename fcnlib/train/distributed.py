"""Data-parallel plumbing for the trainer (torch.distributed); how many ranks a job runs is decided by
fcnlib.pipeline.experiment.run_training.

* Rendezvous from the environment: torchrun's (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) or, inside
  an `srun` step, SLURM's (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, first host of
  SLURM_STEP_NODELIST/SLURM_NODELIST, a port derived from SLURM_JOB_ID). No such environment = one
  process, and nothing here does anything (the single-process trainer is untouched).
* Backend: nccl on CUDA, gloo on CPU.
* `launch(n, ...)`: the workflow's launcher — the rule's command is the same for 1 and N processes; with
  N > 1 it starts N workers (`python -m fcnlib.train.distributed`) with torchrun's environment, forwards
  SIGTERM/SIGINT to them, and exits with their status (143 after a SIGTERM checkpoint, 1 on a crash), so
  Snakemake and SLURM see what happened. If one worker dies, the others (blocked in a collective) are
  stopped rather than left hanging.
* Sums across ranks, not means: the trainer's loss is already normalised by the global batch's
  pixel count, so gradients are all-reduced with a plain sum (`sum_gradients_hook`).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from fcnlib.errors import ConfigError, FcnError
from fcnlib.files.envcaps import env_float, env_int
from fcnlib.runtime.compute import resolve_device


# --------------------------------------------------------------------------------------------------
# environment → (rank, world, local rank, master)
# --------------------------------------------------------------------------------------------------
def first_host(nodelist: str) -> str:
    """First host name of a SLURM node list: "gpu[03-05,07],cpu1" → "gpu03" (no scontrol needed)."""
    m = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ConfigError(f"SLURM_NODELIST={nodelist!r}: cannot parse a host name; set MASTER_ADDR")
    prefix, _, ranges = m.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


@dataclass(frozen=True)
class WorldEnv:
    rank: int
    world: int
    local_rank: int
    master_addr: str
    master_port: int


def world_from_env(env: Mapping[str, str] | None = None) -> WorldEnv:
    """Where this process sits, from torchrun's variables, else an srun step's, else one process."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env and "RANK" in env:
        return WorldEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])),
                        env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", "29500")))
    # SLURM_STEP_NUM_TASKS exists only inside an srun step: the batch script itself also has
    # SLURM_NTASKS > 1 but is a single process, which must not wait for peers that never come.
    if int(env.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_NODELIST") or "127.0.0.1"
        port = int(env["MASTER_PORT"]) if "MASTER_PORT" in env else 20000 + int(env.get("SLURM_JOB_ID", 0)) % 20000
        return WorldEnv(int(env["SLURM_PROCID"]), int(env["SLURM_STEP_NUM_TASKS"]),
                        int(env.get("SLURM_LOCALID", 0)), env.get("MASTER_ADDR") or first_host(nodes), port)
    return WorldEnv(0, 1, 0, "127.0.0.1", 0)


# --------------------------------------------------------------------------------------------------
# the process group as the trainer sees it
# --------------------------------------------------------------------------------------------------
class Dist:
    """rank/world plus the few collectives the trainer needs; with world 1 every call is a no-op."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, device: Any = "cpu") -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = torch.device(device)
        # gloo reduces CPU tensors; nccl needs them on the rank's GPU
        self.comm_device = self.device if self.device.type == "cuda" else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def all_reduce(self, t: Any, op: str = "sum") -> Any:
        """In-place sum/max of a tensor over ranks (returned on its own device)."""
        if not self.active:
            return t

        buf = t.to(self.comm_device)
        dist.all_reduce(buf, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return buf.to(t.device)

    def agree_max(self, value: int) -> int:
        """The largest of one integer over ranks (e.g. the signal one rank received)."""
        if not self.active:
            return value

        return int(self.all_reduce(torch.tensor([value], dtype=torch.int64), "max").item())

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's picklable `obj` on every rank."""
        if not self.active:
            return obj

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.comm_device)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """[rank 0's obj, rank 1's obj, …] on every rank."""
        if not self.active:
            return [obj]

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            if self.comm_device.type == "cuda":
                dist.barrier(device_ids=[self.comm_device.index or 0])
            else:
                dist.barrier()

    def wrap(self, model: Any) -> Any:
        """DistributedDataParallel with summed (not averaged) gradients; the bare model with world 1."""
        if not self.active:
            return model

        ids = [self.device.index or 0] if self.device.type == "cuda" else None
        ddp = DDP(model, device_ids=ids)  # FCNs have no buffers (no batch norm): nothing to sync
        ddp.register_comm_hook(None, sum_gradients_hook)
        return ddp

    def close(self) -> None:
        if self.active:
            if dist.is_initialized():
                dist.destroy_process_group()


def sum_gradients_hook(process_group, bucket):  # noqa: ANN001, ANN201 - DDP rejects non-GradBucket hints
    """DDP communication hook: all-reduce SUM without DDP's division by the world size."""
    fut = dist.all_reduce(bucket.buffer(), group=process_group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def setup(device: str | Any = "auto") -> tuple[Dist, Any]:
    """Join the process group the environment describes (no-op for one process).

    Returns (Dist, device for this rank): an explicit device is kept; "auto" means cuda:LOCAL_RANK with
    CUDA, else CPU. A world > 1 with a CPU device uses gloo.
    """
    w = world_from_env()
    if w.world <= 1:
        return Dist(), device
    dev = resolve_device(device, index=w.local_rank)  # "auto": this rank's GPU (or the CPU)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)

    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            init_method=f"tcp://{w.master_addr}:{w.master_port}", rank=w.rank, world_size=w.world,
            timeout=datetime.timedelta(minutes=env_float("FCN_DIST_TIMEOUT_MIN", 30.0, "minutes")))
    if w.rank == 0:
        print(f"fcn train: {w.world} ranks ({'nccl' if dev.type == 'cuda' else 'gloo'}), master "
              f"{w.master_addr}:{w.master_port}", file=sys.stderr)
    return Dist(w.rank, w.world, w.local_rank, dev), str(dev)


# --------------------------------------------------------------------------------------------------
# the launcher (what the training rule calls; same command for 1 and N processes)
# --------------------------------------------------------------------------------------------------
def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(nprocs: int, target: str, kwargs: Mapping[str, Any], devices: Sequence[str] | None = None,
           grace_s: float = 60.0, spec_dir: str | os.PathLike | None = None, srun: bool = False,
           threads: int | None = None) -> int:
    """Run `target` ("module:function") in `nprocs` worker processes of one process group; exit status.

    Worker r gets torchrun's environment (RANK=r, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and
    `device=devices[r]` (when given) among its kwargs. SIGTERM/SIGINT to the launcher are forwarded to
    every worker (each checkpoints and exits 128+signal). When a worker fails, the rest get SIGTERM, then
    SIGKILL after `grace_s`. Returns 0, the failing worker's status, or 128+signal for a killed worker.
    """
    if nprocs < 1:
        raise ConfigError(f"processes={nprocs}; use an integer ≥ 1")
    # spec_dir: on a shared file system when srun starts the workers on other nodes
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="fcn-launch-", delete=False, dir=spec_dir) as f:
        json.dump({"target": target, "kwargs": dict(kwargs)}, f, default=str)
        spec = f.name
    port = free_port()
    procs: list[subprocess.Popen] = []
    out = sys.stdout if _has_fd(sys.stdout) else None
    err = sys.stderr if _has_fd(sys.stderr) else None
    got: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        got.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        base = {**os.environ, **({"FCN_WORKER_THREADS": str(threads)} if threads else {})}
        if srun:  # inside a SLURM allocation of nprocs tasks (maybe several nodes): srun places the ranks
            procs.append(subprocess.Popen(["srun", f"--ntasks={nprocs}", "--kill-on-bad-exit=1", sys.executable,
                                           "-m", "fcnlib.train.distributed", spec], env=base, stdout=out, stderr=err))
        for r in range(0 if srun else nprocs):
            env = {**base, "RANK": str(r), "WORLD_SIZE": str(nprocs), "LOCAL_RANK": str(r),
                   "LOCAL_WORLD_SIZE": str(nprocs), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            if devices is not None:
                env["FCN_WORKER_DEVICE"] = str(devices[r])
            procs.append(subprocess.Popen([sys.executable, "-m", "fcnlib.train.distributed", spec], env=env,
                                          stdout=out, stderr=err, preexec_fn=_term_with_parent))
        first_failure, failed_at = None, None
        while any(p.poll() is None for p in procs):
            bad = [p for p in procs if p.poll() not in (None, 0)]
            if bad and failed_at is None:
                first_failure = _status(bad[0].returncode)  # the cause, not the ranks stopped after it
                failed_at = time.monotonic()
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
            if failed_at is not None and time.monotonic() - failed_at > grace_s:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.2)
        nonzero = [_status(p.returncode) for p in procs if p.returncode != 0]
        status = first_failure if first_failure is not None else (nonzero[0] if nonzero else 0)
        if got and status == 0:
            status = 128 + got[0]
        return status
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        Path(spec).unlink(missing_ok=True)


def slurm_job_tasks(env: Mapping[str, str] | None = None) -> int:
    """Tasks of the SLURM job this process runs in (1 outside SLURM). SLURM_NTASKS when set, else asked
    from scontrol: the slurm job-step plugin strips SLURM_* (but the job id) from a job's environment."""
    env = os.environ if env is None else env
    job = env.get("SLURM_JOB_ID")
    if not job:
        return 1
    if env.get("SLURM_NTASKS"):
        return int(env["SLURM_NTASKS"])
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return 1
    m = re.search(r"\bNumTasks=(\d+)", out)
    return int(m.group(1)) if m else 1


def _term_with_parent() -> None:
    """Linux: a worker gets SIGTERM (checkpoint, exit) if the launcher dies, even of SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _status(code: int) -> int:
    return 128 - code if code < 0 else code  # killed by signal N → 128+N, as a shell reports it


def _has_fd(stream: Any) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def _worker(spec_path: str) -> int:
    """One worker: call the target with the spec's kwargs; FcnError → one line, status 1."""
    spec = json.loads(Path(spec_path).read_text())
    mod, _, fn = spec["target"].partition(":")
    kwargs = dict(spec["kwargs"])
    if os.environ.get("FCN_WORKER_DEVICE"):
        kwargs["device"] = os.environ["FCN_WORKER_DEVICE"]
    try:
        if os.environ.get("FCN_WORKER_THREADS"):
            torch.set_num_threads(env_int("FCN_WORKER_THREADS", 1, "threads"))
        getattr(importlib.import_module(mod), fn)(**kwargs)
    except FcnError as e:
        print(f"error: rank {os.environ.get('RANK')}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
