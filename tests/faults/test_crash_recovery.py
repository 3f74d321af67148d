"""Issue 23 class 10: recovery after a kill works as documented. A SIGKILLed job takes its whole worker
pool with it (forkserver, workers, resource tracker: nothing orphaned), and a Snakemake killed in a
folder leaves a lock that `make demo` clears by itself only when no other run is active there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(d))
    return out


def _wait_gone(pgid: int, seconds: float) -> list[int]:
    end = time.monotonic() + seconds
    while (left := _group(pgid)) and time.monotonic() < end:
        time.sleep(0.1)
    return left


# A job as the prepare rules run one: a script whose map_parallel keeps two workers busy.
JOB = """
import sys, time
from fcnlib.parallel import map_parallel
if __name__ == "__main__":
    print("started", flush=True)
    map_parallel(time.sleep, [60.0] * 8, workers=2, progress=False)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("victim", ["job", "forkserver"])
def test_sigkilled_job_leaves_no_pool_process(tmp_path: Path, victim: str) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    job = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           text=True, start_new_session=True)  # its own group: every pool process joins it
    try:
        assert job.stdout.readline().strip() == "started"
        end = time.monotonic() + 60
        while len(_group(job.pid)) < 4 and time.monotonic() < end:  # job, forkserver, 2 workers (+ tracker)
            time.sleep(0.1)
        pool = [p for p in _group(job.pid) if p != job.pid]
        assert len(pool) >= 3, pool
        if victim == "job":
            os.kill(job.pid, signal.SIGKILL)
        else:  # the forkserver (the job's first child that is not the tracker): its workers go with it
            os.kill(min(pool), signal.SIGKILL)
            os.kill(job.pid, signal.SIGKILL)
        job.wait(10)
        left = _wait_gone(job.pid, 10)
        assert left == [], f"orphaned pool processes: {[Path(f'/proc/{p}/cmdline').read_bytes() for p in left]}"
    finally:
        for p in _group(job.pid):
            os.kill(p, signal.SIGKILL)
        job.kill()
        job.wait()
