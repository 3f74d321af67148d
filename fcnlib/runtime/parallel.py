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
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from fcnlib.progress import progress as progress_bar

START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def worker_count(workers: int | None, n: int) -> int:
    """Processes for n items: `workers` (None or 0: every core), at least 1 and at most n."""
    return max(1, min(int(workers or os.cpu_count() or 1), n))


def chunk_size(n: int, workers: int) -> int:
    """Items per task: ~8 tasks per worker so uneven items balance out, at most 64 so the bar moves."""
    return max(1, min(64, n // (8 * workers)))


def _start_worker(env: dict[str, str], initializer: Callable[[], Any] | None) -> None:
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)
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
        if START_METHOD == "forkserver":
            ctx.set_forkserver_preload(["__main__", fn.__module__])  # takes effect when the server starts
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                                 initargs=(dict(os.environ), initializer)) as pool:
            out = []
            for r in pool.map(fn, items, chunksize=chunk_size(n, workers)):
                out.append(r)
                bar.update()
            return out
