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
from fcnlib.runtime.parallel import map_parallel
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


SNAKEFILE = """
rule all:
    input: "out.txt"

rule slow:
    output: "out.txt"
    shell: "sleep {config[delay]} && echo done > {output}"
"""


def _smk(work: Path, *args: str, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(work), "-s",
           str(work / "Snakefile"), *args]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if kw.pop("background", False):
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stale_lock_after_killed_snakemake_is_cleared_only_when_no_run_is_active(tmp_path: Path) -> None:
    from fcnlib.pipeline import runlock

    work = tmp_path / "w"
    work.mkdir()
    (work / "Snakefile").write_text(SNAKEFILE)
    assert runlock.main([str(work)]) == 1 and not runlock.stale_lock(work)  # never run: no lock
    run = _smk(work, "--config", "delay=60", background=True)
    try:
        end = time.monotonic() + 90
        while not runlock.lock_files(work) and time.monotonic() < end:
            time.sleep(0.2)
        assert runlock.lock_files(work), "Snakemake never locked the folder"
        # an active run: the lock is not stale and must not be cleared (from the folder or from elsewhere)
        assert run.pid in runlock.active_runs(work)
        assert runlock.active_runs(tmp_path) == []  # a run in another folder does not hold this one
        assert not runlock.stale_lock(work) and runlock.main([str(work)]) == 1
        os.killpg(run.pid, signal.SIGKILL)  # as the OOM killer or a lost node does
        run.wait(10)
        assert _wait_gone(run.pid, 10) == []
    finally:
        for p in _group(run.pid):
            os.kill(p, signal.SIGKILL)
        run.kill()
        run.wait()
    assert runlock.lock_files(work) and runlock.active_runs(work) == []
    refused = _smk(work, "--config", "delay=0", "--rerun-incomplete")
    assert refused.returncode != 0 and "LockException" in refused.stdout + refused.stderr  # the documented case
    assert runlock.stale_lock(work) and runlock.main([str(work)]) == 0
    assert _smk(work, "--config", "delay=0", "--unlock").returncode == 0  # what `make demo` then runs
    assert runlock.lock_files(work) == [] and runlock.main([str(work)]) == 1
    done = _smk(work, "--config", "delay=0", "--rerun-incomplete")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (work / "out.txt").read_text() == "done\n"
