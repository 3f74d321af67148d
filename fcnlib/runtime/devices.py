"""One GPU per concurrent job on one box: each training/evaluation job claims free GPUs with lock files.

`--resources gpu=N` only makes Snakemake run at most N GPU jobs at once; nothing in Snakemake tells a
job WHICH GPU to use, and CUDA_VISIBLE_DEVICES cannot be set per job. So every GPU job claims devices
itself: `<lock dir>/gpu-<id>.lock`, held with fcntl.flock for the job's lifetime. The kernel drops a
flock when its process dies, SIGKILL included, so a crashed job never leaves a stale claim.

* Lock dir: $FCN_GPU_LOCK_DIR, else <tmp>/fcn-gpu-locks-<uid> (this user's workflows). To share GPUs between
  users, point FCN_GPU_LOCK_DIR at a root-owned sticky folder (`install -d -m 1777 /var/lock/fcn-gpu`): a
  folder owned by another user, or writable by others without the sticky bit, is refused, and lock files
  are opened without following links (fcnlib.files.sharedfs).
* Which GPUs: $FCN_FAKE_GPUS=N (tests: N fake ids, training then runs on CPU), else the entries of
  CUDA_VISIBLE_DEVICES (locks are named after the entry, e.g. a physical index or GPU UUID), else
  /proc/driver/nvidia/gpus (so the Snakefile can count GPUs without importing torch).
* Under SLURM (SLURM_JOB_ID set) nothing is claimed: SLURM binds the job's GPUs and sets
  CUDA_VISIBLE_DEVICES, so the job's devices are simply cuda:0 … cuda:N-1.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from fcnlib.errors import ConfigError
from fcnlib.files.sharedfs import open_dir, open_file, user_temp_dir


def lock_dir() -> Path:
    return Path(os.environ.get("FCN_GPU_LOCK_DIR") or user_temp_dir("fcn-gpu-locks"))


_LOCK_FIX = ("remove it, or set FCN_GPU_LOCK_DIR to a folder of your own (to share GPUs between users: a "
             "root-owned folder with mode 1777)")


def gpu_ids(env: Mapping[str, str] | None = None) -> list[str]:
    """Names of the GPUs this process may use, in CUDA's visible order (cuda:i = ids[i])."""
    env = os.environ if env is None else env
    fake = env.get("FCN_FAKE_GPUS")
    if fake not in (None, ""):
        if not fake.strip().isdigit():
            raise ConfigError(f"FCN_FAKE_GPUS={fake!r}: must be a whole number of fake GPUs (tests); set it or "
                              f"unset it")
        return [f"fake{i}" for i in range(int(fake))]
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        ids = []
        for part in cvd.split(","):
            part = part.strip()
            if not part or part.startswith("-"):
                break  # CUDA stops at the first invalid entry
            ids.append(part)
        return ids
    proc = Path("/proc/driver/nvidia/gpus")
    try:
        return [str(i) for i in range(len(list(proc.iterdir())))]
    except OSError:
        return []


def visible_gpu_count(env: Mapping[str, str] | None = None) -> int:
    """How many GPUs this box shows (0 on a CPU box); cheap, no torch import."""
    return len(gpu_ids(env))


class Claim:
    """The GPUs one job holds: `indices` (positions in CUDA's visible order) and the open lock files."""

    def __init__(self, indices: list[int], ids: list[str], fds: list[int], fake: bool) -> None:
        self.indices, self.ids, self._fds, self.fake = indices, ids, fds, fake

    def devices(self, device: str = "auto") -> list[str]:
        """torch device per claimed GPU for device "auto"/"cuda" (fcnlib.runtime.compute.resolve_device with the
        claimed index: the CPU where CUDA is not usable, e.g. fake GPUs or a fake SLURM GRES); nothing
        claimed: "auto" is the CPU; cpu and cuda:N unchanged."""
        from fcnlib.runtime.compute import resolve_device  # torch: not at import (visible_gpu_count is cheap)

        d = str(device)
        n = max(1, len(self.indices))
        if d not in ("auto", "", "cuda"):  # cpu, cuda:N: as given
            return [d] * n
        if self.indices and not self.fake:
            return [str(resolve_device(d, index=i)) for i in self.indices]
        return [str(resolve_device("cuda")) if d == "cuda" else "cpu"] * n  # cuda without CUDA: ConfigError

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        self._fds = []


def _try_lock(dir_fd: int, d: Path, gid: str) -> int | None:
    name = f"gpu-{gid.replace('/', '_')}.lock"  # a name in the folder, never a path through it
    fd = open_file(dir_fd, name, d / name, _LOCK_FIX)  # 0644: others' jobs can flock it (read access suffices)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    with contextlib.suppress(OSError):  # for people: who holds it (a read-only lock file of another user: no)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def claim(n: int, wait_s: float | None = None, poll_s: float = 2.0) -> Claim:
    """Claim `n` free GPUs (blocking until they are free; ConfigError after `wait_s` seconds).

    n = 0, a CPU box or a SLURM job claims nothing (SLURM has already bound the job's GPUs: indices
    0 … n-1 of its CUDA_VISIBLE_DEVICES).
    """
    ids = gpu_ids()
    fake = bool(os.environ.get("FCN_FAKE_GPUS"))
    if n <= 0 or not ids:
        return Claim([], [], [], fake)
    if n > len(ids):
        raise ConfigError(f"resources.gpu={n}: this job asks for {n} GPUs but only {len(ids)} are visible; "
                          f"lower resources.gpu (or the experiment's gpu)")
    if os.environ.get("SLURM_JOB_ID"):
        return Claim(list(range(n)), ids[:n], [], fake)
    d = lock_dir()
    dir_fd = open_dir(d, _LOCK_FIX)
    try:
        return _claim_in(dir_fd, d, n, ids, fake, wait_s, poll_s)
    finally:
        os.close(dir_fd)


def _claim_in(dir_fd: int, d: Path, n: int, ids: list[str], fake: bool, wait_s: float | None,
              poll_s: float) -> Claim:
    t0, told = time.monotonic(), False
    while True:
        got: list[tuple[int, int]] = []
        try:
            for i, gid in enumerate(ids):
                fd = _try_lock(dir_fd, d, gid)
                if fd is not None:
                    got.append((i, fd))
                    if len(got) == n:
                        return Claim([i for i, _ in got], [ids[i] for i, _ in got], [fd for _, fd in got], fake)
        except BaseException:
            for _, fd in got:
                os.close(fd)
            raise
        for _, fd in got:  # not enough: give the partial claim back, so two waiting jobs cannot deadlock
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        if wait_s is not None and time.monotonic() - t0 >= wait_s:
            raise ConfigError(f"{d}: no {n} free GPU(s) of {ids} after {wait_s:g} s (held by other jobs: "
                              f"see the PIDs in the lock files); wait, or run fewer GPU jobs at once")
        if not told:
            print(f"fcn: waiting for {n} free GPU(s) of {ids} (locks in {d})", file=sys.stderr)
            told = True
        time.sleep(poll_s)


@contextlib.contextmanager
def claimed(n: int, wait_s: float | None = None) -> Iterator[Claim]:
    """`claim(n)` released on exit (a SIGKILLed job's claim goes with its process)."""
    c = claim(n, wait_s)
    try:
        yield c
    finally:
        c.release()


@contextlib.contextmanager
def job_device(device: str = "auto", gpus: int = 1) -> Iterator[str]:
    """The device of a single-process GPU job (evaluation, timing): "auto" → the GPU this job claimed
    (cuda:i), or CPU on a CPU box; an explicit device is kept and nothing is claimed."""
    if str(device) not in ("auto", "", "cuda") or gpus <= 0:
        yield str(device)
        return
    with claimed(1) as c:
        yield c.devices(device)[0]
