"""The users' own command: `snakemake --cores 8 results/tables.md` is safe without `--resources gpu=1`
(the Snakefile caps concurrent GPU jobs at this box's GPU count), and the trap the README describes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMK = str(Path(sys.executable).parent / "snakemake")


def _dry(*args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("FCN_FAKE_GPUS", "CUDA_VISIBLE_DEVICES")}
    e["CUDA_VISIBLE_DEVICES"] = ""  # a CPU box, whatever this machine has
    e.update(env)
    return subprocess.run([SMK, *args], cwd=REPO, capture_output=True, text=True, env=e, timeout=300)


def _jobs(out: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every planned job."""
    return sorted(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)$", out, re.M))


def test_plain_command_plans_the_same_jobs_with_the_gpu_cap():
    plain = _dry("--cores", "8", "results/tables.md", "-n")
    assert plain.returncode == 0, plain.stderr
    explicit = _dry("--cores", "8", "--resources=gpu=1", "results/tables.md", "-n")
    assert explicit.returncode == 0, explicit.stderr
    assert _jobs(plain.stdout + plain.stderr) == _jobs(explicit.stdout + explicit.stderr)
    assert len([j for j in _jobs(plain.stdout + plain.stderr) if j[0] == "train"]) >= 10
    assert "at most gpu=1 GPU job(s) at once" in plain.stderr  # the cap: 1 on a CPU box
    assert "at most gpu=" not in explicit.stderr  # an explicit --resources gpu=N wins
    two = _dry("--cores", "8", "results/tables.md", "-n", FCN_FAKE_GPUS="2")
    assert "at most gpu=2 GPU job(s) at once" in two.stderr
    # a cluster run is not capped (profiles/default would be read there too: the cap is not a profile's)
    cluster = _dry("results/tables.md", "-n", "--profile", "profiles/slurm")
    assert cluster.returncode == 0, cluster.stderr[-3000:]
    assert "at most gpu=" not in cluster.stderr


def test_the_trap_and_the_forms_that_work():
    trap = _dry("--cores", "8", "--resources", "gpu=1", "results/tables.md", "-n")
    msg = "ValueError: dictionary update sequence element #1 has length 1; 2 is required"
    assert trap.returncode != 0 and msg in trap.stderr
    for args in (["-n", "--cores", "8", "--resources", "gpu=1", "--", "results/tables.md"],
                 ["results/tables.md", "--cores", "8", "--resources", "gpu=1", "-n"]):
        r = _dry(*args)
        assert r.returncode == 0, (args, r.stderr[-2000:])


def test_cuda_on_a_cpu_box_stops_at_config_validation():
    """`device: cuda` where CUDA is not usable: one line before any job, naming the key; a cluster run (its
    jobs start elsewhere) is not refused here."""
    r = _dry("--cores", "2", "results/tables.md", "-n", "--config", "device=cuda")
    assert r.returncode != 0
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "CUDA is not available" in ln]
    assert len(lines) == 1 and "at 'device'" in lines[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    cluster = _dry("results/tables.md", "-n", "--profile", "profiles/slurm", "--config", "device=cuda")
    assert cluster.returncode == 0, cluster.stderr[-3000:]
