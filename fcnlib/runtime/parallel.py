"""The one parallel map of the data steps (prepare nyud/siftflow/context, SBD conversion, HHA encoding).

`map_parallel(fn, items)` runs fn over items on worker processes with a progress bar and returns the
results in input order. The start method, the worker count and the chunk size are decided here only.

Start method: forkserver (spawn on platforms without it). Not fork: the calling process may already
run other threads (torch's and OpenMP's pools once an op ran, OpenBLAS's from import, tqdm's monitor
after a bar), and a forked child inherits their locks in whatever state they were, which can deadlock
it (Python 3.12 warns about it, 3.14 no longer forks by default on Linux). Not plain spawn: each worker
would start an interpreter and import the package (fcnlib.data pulls in torch: ~1.5 s and ~290 MB per
worker). forkserver forks each worker from a single-threaded server that has imported fn's module once.
As with spawn, the main script is imported again in the workers as `__mp_main__`, so a script that
starts a map keeps its work under `if __name__ == "__main__":` (workflow/scripts/*.py do); and fn must
be a module-level function (it is pickled by name).
The server is started once per process and would keep the environment of that moment; each worker is
given the caller's current environment (e.g. FCN_MAX_IMAGE_PIXELS set by --max-pixels) before it runs.

The pool dies with the job that started it: a SIGKILLed job (OOM killer, lost node, a killed Snakemake)
runs no cleanup, and its idle workers would wait on their task queue forever, owned by PID 1. So the
server asks the kernel for SIGKILL when the job's thread that started it ends (Linux PR_SET_PDEATHSIG,
set when the server imports this module, told the job's pid through _PARENT_ENV), each worker asks the
same of the server, and each worker also polls, every half second, that the server and the job still
run (other platforms; and the window before the kernel request). The resource tracker exits by itself
once the last of them is gone.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from fcnlib.progress import progress as progress_bar

START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
#: Set (to the job's pid) while a pool starts, so the forkserver, importing this module, knows whom to die with.
_PARENT_ENV = "FCN_POOL_PARENT_PID"
_POLL_S = 0.5


def _request_parent_death_signal() -> None:
    """Linux: SIGKILL this process when its parent (the thread that started it) ends."""
    if not sys.platform.startswith("linux"):
        return

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    """`pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def _die_with(job: int) -> None:
    """In a pool process: end this process as soon as `job` (or this process's parent) is gone."""
    parent = os.getppid()
    _request_parent_death_signal()
    if os.getppid() != parent or not _alive(job):  # died before the request took effect
        os._exit(1)


def _poll_parents(job: int, parent: int) -> None:
    while True:
        time.sleep(_POLL_S)
        if os.getppid() != parent or not _alive(job):
            os._exit(1)


def _guard_server() -> None:
    """Run at import: in the forkserver started by map_parallel (the only process given _PARENT_ENV)."""
    job = os.environ.pop(_PARENT_ENV, "")
    if job.isdigit() and int(job) == os.getppid():
        _die_with(int(job))


_guard_server()


def worker_count(workers: int | None, n: int) -> int:
    """Processes for n items: `workers` (None or 0: every core), at least 1 and at most n."""
    return max(1, min(int(workers or os.cpu_count() or 1), n))


def chunk_size(n: int, workers: int) -> int:
    """Items per task: ~8 tasks per worker so uneven items balance out, at most 64 so the bar moves."""
    return max(1, min(64, n // (8 * workers)))


def _start_worker(env: dict[str, str], initializer: Callable[[], Any] | None, job: int) -> None:
    _die_with(job)
    threading.Thread(target=_poll_parents, args=(job, os.getppid()), daemon=True, name="fcn-pool-guard").start()
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)
    os.environ.pop(_PARENT_ENV, None)
    if initializer is not None:
        initializer()


def map_parallel(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None, desc: str = "",
                 *, unit: str = "img", progress: bool = True,
                 initializer: Callable[[], Any] | None = None) -> list[Any]:
    """[fn(x) for x in items] on `workers` processes (default: every core), with a progress bar.

    `initializer` (module-level, no arguments) runs once in each worker before its first item, or once
    here when the map runs in this process (one worker or one item). The first exception raised by fn
    is raised here.
    """
    n = len(items)
    workers = worker_count(workers, n)
    with progress_bar(total=n, desc=desc or None, unit=unit, disable=not progress or n == 0) as bar:
        if workers == 1:
            if n and initializer is not None:
                initializer()
            out = []
            for x in items:
                out.append(fn(x))
                bar.update()
            return out
        ctx = multiprocessing.get_context(START_METHOD)
        if START_METHOD == "forkserver":  # takes effect when the server starts; this module first (_guard_server)
            ctx.set_forkserver_preload([__name__, "__main__", fn.__module__])
        env = dict(os.environ)
        os.environ[_PARENT_ENV] = str(os.getpid())  # read by a forkserver started now, not by the workers
        try:
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                                     initargs=(env, initializer, os.getpid())) as pool:
                out = []
                for r in pool.map(fn, items, chunksize=chunk_size(n, workers)):
                    out.append(r)
                    bar.update()
                return out
        finally:
            if _PARENT_ENV in env:
                os.environ[_PARENT_ENV] = env[_PARENT_ENV]
            else:
                os.environ.pop(_PARENT_ENV, None)
