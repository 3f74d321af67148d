"""profiles/slurm on a real single-node SLURM (started here by tests/cluster/start_slurm.sh).

Proves: jobs really go through sbatch (SLURM job ids, partitions, logs), the GPU request path
(`gpu=1` → `--gpus=1 --cpus-per-gpu` → CUDA_VISIBLE_DEVICES set by SLURM from the fake GRES), a job
killed with scancel is resubmitted (`retries` in the profile), and the real workflow's training and
evaluation give on SLURM the same results as a local run.

    pytest -m cluster tests/workflow/test_slurm.py      # as root; ~3 min on 2 cores
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "tests" / "cluster"
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def real_scontrol() -> None:
    """The real `scontrol` for these tests (and the SLURM they start): the session's stub (tests/conftest.py)
    off PATH until the session ends."""
    stub = os.environ.get("FCN_TEST_SCONTROL_STUB")
    old = os.environ.get("PATH", "")
    if stub:
        os.environ["PATH"] = os.pathsep.join(p for p in old.split(os.pathsep) if p != stub)
    yield
    os.environ["PATH"] = old


def _sinfo_ok() -> bool:
    if shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture(scope="session")
def slurm(real_scontrol: None) -> None:
    """A running SLURM; started (and afterwards stopped) here unless one was already up."""
    was_up = _sinfo_ok()
    if not was_up:
        if os.geteuid() != 0:
            pytest.skip("starting a local SLURM needs root (apt-get, slurmd); run as root or start it first")
        r = subprocess.run(["bash", str(CLUSTER / "start_slurm.sh")], capture_output=True, text=True,
                           timeout=600)
        if r.returncode == 3:
            pytest.skip(f"SLURM packages could not be installed: {r.stderr.strip()}")
        assert r.returncode == 0, r.stdout + r.stderr
    yield
    if not was_up:
        subprocess.run(["bash", str(CLUSTER / "stop_slurm.sh")], capture_output=True, timeout=60)


def slurm_jobs(workdir: Path) -> list[dict[str, str]]:
    """Every SLURM job (finished ones too, for MinJobAge) submitted from `workdir`."""
    r = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%P|%k|%T|%Z"],
                       capture_output=True, text=True, check=True)
    jobs = []
    for line in r.stdout.splitlines():
        jobid, part, comment, state, wd = line.split("|", 4)
        if Path(wd) == workdir:
            jobs.append({"id": jobid, "partition": part, "rule": comment.split("_wildcards")[0]
                         .removeprefix("rule_"), "state": state})
    return jobs


def sbatch_calls(log: str) -> dict[str, str]:
    """rule -> the sbatch command line the plugin logged (--verbose)."""
    calls = {}
    for line in log.splitlines():
        m = re.search(r"sbatch call: (sbatch .*?--comment '?rule_(\w+?)(?:_wildcards\S*)?'? .*)", line)
        if m:
            calls.setdefault(m.group(2), m.group(1))
    return calls


# ---------------------------------------------------------------------------------------------------
# A two-rule workflow: the GRES path and scancel → retry, independent of the real pipeline's speed.

MINI = r'''
rule all:
    input: "out/env.txt"

rule train:
    output: "out/env.txt"
    resources: gpu=1, mem_mb=200, runtime=10
    shell:
        # the first attempt (no marker yet) idles so the test can scancel it; the retry records the
        # environment SLURM gave it
        "if [ ! -e first_attempt ]; then echo $SLURM_JOB_ID > first_attempt; sleep 120; fi; "
        "echo \"CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES SLURM_JOB_ID=$SLURM_JOB_ID\" > {output}"
'''


def _cancel_first_attempt(marker: Path, cancelled: list[str], deadline: float) -> None:
    """scancel the job whose shell wrote `marker` (its SLURM job id): killed mid-run, not while pending."""
    while time.time() < deadline:
        if marker.exists() and (jobid := marker.read_text().strip()):
            subprocess.run(["scancel", jobid], check=True)
            cancelled.append(jobid)
            return
        time.sleep(0.5)


def test_gpu_request_and_scancel_retry(slurm: None, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(MINI)
    cancelled: list[str] = []
    killer = threading.Thread(target=_cancel_first_attempt,
                              args=(tmp_path / "first_attempt", cancelled, time.time() + 240), daemon=True)
    killer.start()
    t0 = time.time()
    r = subprocess.run(["snakemake", "--profile", str(REPO / "profiles" / "slurm"), "--verbose"],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=420)
    elapsed = time.time() - t0
    killer.join(timeout=5)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-6000:]
    assert len(cancelled) == 1, "the first train job never started"

    # the profile's GPU settings reached sbatch
    call = sbatch_calls(log)["train"]
    assert "--gpus=1" in call and "--cpus-per-gpu=2" in call and "-p gpu" in call, call
    # SLURM itself ran both attempts: the cancelled one and a resubmitted, completed one
    jobs = [j for j in slurm_jobs(tmp_path) if j["rule"] == "train"]
    states = sorted(j["state"] for j in jobs)
    assert states == ["CANCELLED", "COMPLETED"], jobs
    assert {j["partition"] for j in jobs} == {"gpu"}
    # inside the job SLURM bound a (fake) GPU and exported its index
    env = dict(kv.split("=", 1) for kv in (tmp_path / "out" / "env.txt").read_text().split())
    assert env["CUDA_VISIBLE_DEVICES"] in {"0", "1"}, env
    done = next(j for j in jobs if j["state"] == "COMPLETED")
    assert env["SLURM_JOB_ID"] == done["id"] and done["id"] not in cancelled
    print(f"scancel + retry on SLURM: {elapsed:.0f} s")


# ---------------------------------------------------------------------------------------------------
# The real workflow: data preparation locally, training + evaluation on SLURM, compared to local.

TARGET = "results/pascal/voc-fcn32s/seg11valid/metrics.json"
PREP = ["data/pascal/dataset.json", "data/weights/vgg16.pt"]


def _copy_repo(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    for name in ("Snakefile", "workflow", "config", "fcnlib"):
        src = REPO / name
        (shutil.copytree(src, dest / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, dest / name))
    return dest


def _smk(cwd: Path, *args: str, extra_config: str | None = None, timeout: int = 600) -> str:
    configs = ["config/test.yaml"] + ([extra_config] if extra_config else [])  # later files merge over
    r = subprocess.run(["snakemake", *args, "--configfile", *configs], cwd=cwd, env=_env(),
                       capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    return out


def _scores(path: Path) -> dict[str, float]:
    m = json.loads(path.read_text())
    return {k: m[k] for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")}


def test_real_workflow_on_slurm_matches_local(slurm: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    local = _copy_repo(tmp_path_factory.mktemp("local"))
    _smk(local, TARGET, "--profile", str(REPO / "profiles" / "local"))

    cluster = _copy_repo(tmp_path_factory.mktemp("slurm"))
    _smk(cluster, *PREP, "--profile", str(REPO / "profiles" / "local"))  # inputs, as on a login node
    t0 = time.time()
    # the test config asks for gpu=0 (CPU); gpu=1 exercises --gpus on the real rules. Through a config
    # overlay, not --set-resources, which would replace the profile's set-resources, not add to them.
    resources = {**yaml.safe_load((REPO / "config" / "test.yaml").read_text())["resources"], "gpu": 1}
    (cluster / "gpu.yaml").write_text(yaml.safe_dump({"resources": resources}))
    log = _smk(cluster, TARGET, "--profile", str(REPO / "profiles" / "slurm"), "--verbose",
               "--slurm-keep-successful-logs", extra_config="gpu.yaml")
    elapsed = time.time() - t0

    jobs = {j["rule"]: j for j in slurm_jobs(cluster)}
    assert set(jobs) == {"train", "evaluate"}, jobs
    assert all(j["state"] == "COMPLETED" and j["partition"] == "gpu" for j in jobs.values()), jobs
    calls = sbatch_calls(log)
    assert "--gpus=1" in calls["train"] and "--gpus=1" in calls["evaluate"], calls
    for rule, job in jobs.items():  # the plugin's per-job log: slurm_logs/rule_<rule>/<wildcards>/<id>.log
        logs = list((cluster / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob(f"{job['id']}.log"))
        assert len(logs) == 1, (rule, job)

    # same seed, same code, one thread: the SLURM-trained weights are bit-identical to the local ones
    ours, theirs = json.loads((cluster / TARGET).read_text()), json.loads((local / TARGET).read_text())
    assert ours["weights_sha256"] == theirs["weights_sha256"]
    assert _scores(cluster / TARGET) == _scores(local / TARGET)
    print(f"train + evaluate on SLURM: {elapsed:.0f} s")


# ---------------------------------------------------------------------------------------------------
# One net as 2 SLURM tasks (srun, gloo on CPU) through profiles/slurm == the local 2-process run.

TWO_TASKS = {"nodes": 1, "tasks_per_node": 2, "mpi": "srun", "cpus_per_gpu": 1}  # node has 2 CPUs
WEIGHTS = "results/pascal/voc-fcn32s/weights.pt"


def _two_task_profile(dest: Path) -> Path:
    """profiles/slurm with the several-nodes layout of docs/cluster.md for `train` (here: 1 node, 2 tasks)."""
    prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    prof["set-resources"]["train"] = {**prof["set-resources"]["train"], **TWO_TASKS}
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(prof))
    return dest


def test_one_training_as_two_slurm_tasks_matches_local_two_processes(
        slurm: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    import torch

    # 2 ranks × batch 2 = the test recipe's 4; device auto (test.yaml pins cpu, which claims no GPU): the fake
    # GPUs are claimed, and without CUDA they still train on the CPU, bitwise comparable with the SLURM run
    overlay = {"device": "auto", "experiments": {"voc-fcn32s": {"gpu": 2}}}
    local = _copy_repo(tmp_path_factory.mktemp("local2"))
    (local / "gpu2.yaml").write_text(yaml.safe_dump(overlay))
    env_fake = {"FCN_FAKE_GPUS": "2", "FCN_GPU_LOCK_DIR": str(local / "locks")}
    r = subprocess.run(["snakemake", WEIGHTS, "--profile", str(REPO / "profiles" / "local"), "--configfile",
                        "config/test.yaml", "gpu2.yaml"], cwd=local, env={**_env(), **env_fake},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    train_log = (local / "logs" / "train" / "pascal" / "voc-fcn32s.log").read_text()
    assert "GPU(s) ['fake0', 'fake1'] claimed" in train_log

    cluster = _copy_repo(tmp_path_factory.mktemp("slurm2"))
    (cluster / "gpu2.yaml").write_text(yaml.safe_dump(overlay))
    _smk(cluster, *PREP, "--profile", str(REPO / "profiles" / "local"))
    profile = _two_task_profile(cluster / "profile2")
    log = _smk(cluster, WEIGHTS, "--profile", str(profile), "--verbose", "--slurm-keep-successful-logs",
               extra_config="gpu2.yaml")
    call = sbatch_calls(log)["train"]
    assert "--gpus=2" in call and "--ntasks-per-node=2" in call and "--nodes=1" in call, call
    jobs = [j for j in slurm_jobs(cluster) if j["rule"] == "train"]
    assert [j["state"] for j in jobs] == ["COMPLETED"], jobs
    job_log = (cluster / "logs" / "train" / "pascal" / "voc-fcn32s.log").read_text()
    assert "2 SLURM tasks (srun)" in job_log and "2 ranks (gloo)" in job_log, job_log[-3000:]
    assert "2 ranks (gloo)" in train_log and "srun" not in train_log
    a = torch.load(local / WEIGHTS, weights_only=True)["state_dict"]
    b = torch.load(cluster / WEIGHTS, weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
