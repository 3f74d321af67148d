"""fcnlib.runtime.parallel.map_parallel: results in input order, the initializer and the caller's environment reach
every worker, a worker's exception reaches the caller, and the start method is never fork."""

from __future__ import annotations

import os

import pytest

from fcnlib.runtime import parallel
from fcnlib.runtime.parallel import chunk_size, map_parallel, worker_count


def _square_slowly_first(x: int) -> tuple[int, int]:
    if x == 0:  # the first item finishes last: order must come from the map, not from completion
        import time

        time.sleep(0.3)
    return x * x, os.getpid()


def _mark_worker() -> None:
    os.environ["FCN_TEST_WORKER_INIT"] = str(os.getpid())


def _worker_view(_: int) -> tuple[str | None, str | None, int]:
    return os.environ.get("FCN_TEST_WORKER_INIT"), os.environ.get("FCN_TEST_PARENT_VALUE"), os.getpid()


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"item {x} is bad")
    return x


def test_results_in_order_on_two_processes() -> None:
    out = map_parallel(_square_slowly_first, list(range(12)), workers=2, progress=False)
    assert [v for v, _ in out] == [x * x for x in range(12)]
    assert os.getpid() not in {pid for _, pid in out}  # really ran in workers


def test_initializer_and_current_environment_reach_each_worker(monkeypatch) -> None:
    # set after any forkserver of this process started: the worker must still see it
    monkeypatch.setenv("FCN_TEST_PARENT_VALUE", "from-parent")
    monkeypatch.delenv("FCN_TEST_WORKER_INIT", raising=False)
    out = map_parallel(_worker_view, list(range(8)), workers=2, progress=False, initializer=_mark_worker)
    for init_pid, parent_value, pid in out:
        assert init_pid == str(pid)  # the initializer ran in that very worker, before its items
        assert parent_value == "from-parent"
    assert "FCN_TEST_WORKER_INIT" not in os.environ  # ran in the workers, not here


def test_one_worker_runs_here_with_the_initializer(monkeypatch) -> None:
    monkeypatch.delenv("FCN_TEST_WORKER_INIT", raising=False)
    out = map_parallel(_worker_view, [0, 1], workers=1, progress=False, initializer=_mark_worker)
    assert [pid for _, _, pid in out] == [os.getpid()] * 2
    assert os.environ["FCN_TEST_WORKER_INIT"] == str(os.getpid())
    assert map_parallel(_worker_view, [], workers=4, progress=False, initializer=_mark_worker) == []


def test_worker_exception_reaches_the_caller() -> None:
    with pytest.raises(ValueError, match="item 3 is bad"):
        map_parallel(_fail_on_three, list(range(6)), workers=2, progress=False)


def test_policy() -> None:
    assert parallel.START_METHOD in ("forkserver", "spawn")  # fork can deadlock a multi-threaded caller
    assert worker_count(None, 3) == min(os.cpu_count() or 1, 3)
    assert worker_count(0, 1000) == (os.cpu_count() or 1)
    assert worker_count(8, 0) == 1 and worker_count(8, 5) == 5 and worker_count(2, 5) == 2
    assert chunk_size(10, 4) == 1 and chunk_size(800, 2) == 50 and chunk_size(10**6, 2) == 64
