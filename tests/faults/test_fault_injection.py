"""Crash recovery end to end: kill each stage's running job with SIGKILL at a seeded random point, rerun
the same Snakemake command with --rerun-incomplete (README, "Recovering from failures"), and require every
output to be bitwise identical to the uninterrupted reference run (`demo_run`). Also SIGTERM (to
Snakemake, and to its whole process group as SLURM does) and a full disk (a small tmpfs).

To stay within a few minutes, each case copies the reference workdir, deletes only the targeted job's
outputs (and its log) and asks Snakemake for that one target, so only that job reruns. Because the
inputs are untouched and the job is deterministic on CPU, its outputs must match the reference byte for
byte; wall-clock files (timing.json, *_time.png curves, logs, benchmarks) are left out of the comparison
and training logs are compared without their time fields. The seed: FCN_FAULT_SEED (default 0).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faultlib import (
    diff_trees,
    error_lines,
    kill_job,
    leftovers,
    reap,
    reference_seconds,
    remove,
    run_smk,
    tree_digest,
)

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("FCN_FAULT_SEED", "0"))


@dataclass(frozen=True)
class Stage:
    name: str
    script: str  # workflow/scripts/<script>.py
    target: str  # the Snakemake target (the job's declared output)
    log: str  # the job's log file
    remove: tuple[str, ...] = ()  # extra paths to delete (undeclared work state, sibling outputs)
    wait_for: str | None = None  # kill only once this exists (e.g. a training checkpoint)
    # the delay counts from the job's start, not from its "started" log line: a demo download (a local
    # file:// copy of a few KiB) is over within the 20 ms polling step; resuming a .part file is
    # covered by tests/test_download.py
    from_start: bool = False
    retries: bool = False  # the rule has `retries:` so Snakemake itself reruns the killed job
    notes: list[str] = field(default_factory=list, compare=False)


STAGES = [
    Stage("download", "download", "data/raw/VOCtrainval_11-May-2012.tar",
          "logs/download/VOCtrainval_11-May-2012.tar.log", from_start=True, retries=True),
    Stage("extract", "extract", "data/extracted/voc2012", "logs/extract/voc2012.log"),
    Stage("sbd_merge", "prepare", "data/pascal/dataset.json", "logs/prepare/pascal.log",
          remove=("data/pascal",)),
    Stage("hha", "encode_hha", "data/nyud/hha/manifest.json", "logs/hha/encode_hha.log", remove=("data/nyud/hha",)),
    Stage("weight_conversion", "convert_weights", "data/weights/vgg16.pt", "logs/weights/vgg16.log"),
    Stage("train_fcn32s", "train", "results/pascal/voc-fcn32s/weights.pt", "logs/train/pascal/voc-fcn32s.log",
          remove=("results/pascal/voc-fcn32s/log.jsonl", "results/pascal/voc-fcn32s/.train")),
    # killed after the iteration-3 checkpoint, so the rerun must resume from it and still match
    Stage("train_fcn16s_after_checkpoint", "train", "results/pascal/voc-fcn16s/weights.pt",
          "logs/train/pascal/voc-fcn16s.log",
          remove=("results/pascal/voc-fcn16s/log.jsonl", "results/pascal/voc-fcn16s/.train"),
          wait_for="results/pascal/voc-fcn16s/.train/resume.pt"),
    Stage("train_fcn8s", "train", "results/pascal/voc-fcn8s/weights.pt", "logs/train/pascal/voc-fcn8s.log",
          remove=("results/pascal/voc-fcn8s/log.jsonl", "results/pascal/voc-fcn8s/.train")),
    Stage("train_rgbhha_fusion", "train", "results/nyud/nyud-rgbhha-fcn32s/weights.pt",
          "logs/train/nyud/nyud-rgbhha-fcn32s.log",
          remove=("results/nyud/nyud-rgbhha-fcn32s/log.jsonl", "results/nyud/nyud-rgbhha-fcn32s/.train")),
    Stage("evaluate", "evaluate", "results/pascal/voc-fcn8s/seg11valid/metrics.json",
          "logs/evaluate/pascal/voc-fcn8s/seg11valid.log"),
    Stage("figures", "fig4", "results/figures/fig4_pascal.png", "logs/figures/fig4_pascal.log"),
    Stage("tables", "tables", "results/tables.md", "logs/report/tables.log", remove=("results/tables.json",)),
]


@pytest.fixture(scope="module")
def ref_digest(demo_run: Path) -> dict[str, str]:
    return tree_digest(demo_run)


def _assert_matches_reference(work: Path, ref_digest: dict[str, str]) -> None:
    diff = diff_trees(ref_digest, tree_digest(work))
    assert not diff, "outputs differ from the uninterrupted run:\n" + "\n".join(diff[:40])
    assert not leftovers(work), f"temp/partial files left behind: {leftovers(work)}"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_sigkill_then_rerun_incomplete(stage: Stage, demo_run: Path, work: Path, ref_digest: dict[str, str]) -> None:
    rng = random.Random(f"{SEED}-{stage.name}")
    remove(work, stage.target, stage.log, *stage.remove)
    ref_s = 1.0 if stage.from_start else reference_seconds(demo_run / stage.log)
    delay = rng.uniform(0.05, 0.9) * ref_s * (0.5 if stage.wait_for else 1.0)
    wait_for = work / stage.wait_for if stage.wait_for else None

    k = kill_job(work, [stage.target], stage.script, work / stage.log, delay, wait_for=wait_for,
                 wait_started=not stage.from_start)
    if stage.retries:  # download has `retries: 2`: Snakemake restarts the killed job in the same run
        print(f"{stage.name}: SIGKILL pid {k.pid} after {k.delay:.2f} s {k.notes}; snakemake exit {k.returncode}")
        assert k.returncode == 0, k.output[-3000:]
        _assert_matches_reference(work, ref_digest)
        return
    if k.finished_before_kill:  # the job beat the random delay: kill the next one as soon as it works
        remove(work, stage.target, stage.log, *stage.remove)
        k = kill_job(work, [stage.target], stage.script, work / stage.log, 0.0, wait_for=wait_for,
                     wait_started=not stage.from_start)
    print(f"{stage.name}: SIGKILL pid {k.pid} after {k.delay:.2f} s of ~{ref_s:.1f} s of work "
          f"{k.notes}; snakemake exit {k.returncode}")
    assert not k.finished_before_kill, "the job finished before it could be killed"
    assert k.returncode != 0, k.output[-3000:]
    # nothing half-written looks done: Snakemake removed the failed job's output
    assert not (work / stage.target).exists(), f"{stage.target} survived the killed job"

    r = run_smk(work, stage.target, "--rerun-incomplete")
    assert r.returncode == 0, r.stdout[-5000:]
    if stage.wait_for and not k.notes:
        assert "resuming" in (work / stage.log).read_text(), "the rerun did not resume from the checkpoint"
    _assert_matches_reference(work, ref_digest)


def test_sigterm_to_snakemake(demo_run: Path, work: Path, ref_digest: dict[str, str]) -> None:
    """SIGTERM to the Snakemake process alone (an interactive `kill`): it must stop and the rerun match."""
    target, log = "results/pascal/voc-fcn8s/weights.pt", "logs/train/pascal/voc-fcn8s.log"
    remove(work, target, log, "results/pascal/voc-fcn8s/log.jsonl", "results/pascal/voc-fcn8s/.train")
    delay = random.Random(f"{SEED}-sigterm").uniform(0.05, 0.9) * reference_seconds(demo_run / log)
    k = kill_job(work, [target], "train", work / log, delay, sig=signal.SIGTERM, target="snakemake")
    if k.finished_before_kill:  # training beat the random delay: signal the next run at once
        remove(work, target, log, "results/pascal/voc-fcn8s/log.jsonl", "results/pascal/voc-fcn8s/.train")
        k = kill_job(work, [target], "train", work / log, 0.0, sig=signal.SIGTERM, target="snakemake")
    print(f"SIGTERM to snakemake after {k.delay:.2f} s: exit {k.returncode}\n{k.output[-1500:]}")
    assert k.returncode != 0
    reap(work)  # a job Snakemake left running is ours to clean up
    # Snakemake may let the running job finish (its weights are then complete: written atomically, last)
    print(f"after SIGTERM to snakemake, {target} exists: {(work / target).exists()}")
    r = run_smk(work, target, "--rerun-incomplete")
    assert r.returncode == 0, r.stdout[-5000:]
    _assert_matches_reference(work, ref_digest)


def test_sigterm_to_process_group_like_slurm(demo_run: Path, work: Path, ref_digest: dict[str, str]) -> None:
    """SLURM preemption sends SIGTERM to every process of the job: the trainer checkpoints and exits
    143, Snakemake fails the job, and the rerun resumes from the checkpoint to the same weights."""
    target, log = "results/pascal/voc-fcn16s/weights.pt", "logs/train/pascal/voc-fcn16s.log"
    remove(work, target, log, "results/pascal/voc-fcn16s/log.jsonl", "results/pascal/voc-fcn16s/.train")
    # after the first checkpoint, the trainer's signal handler is surely installed
    ckpt = work / "results/pascal/voc-fcn16s/.train/resume.pt"
    first = random.Random(f"{SEED}-slurm").uniform(0.0, 0.3) * reference_seconds(demo_run / log)
    # the 6-iteration test job can finish between its checkpoint and a late signal; then the signal only
    # hits Snakemake. Retry with no delay until it lands mid-training, which is the case under test.
    for delay in (first, 0.0, 0.0, 0.0):
        remove(work, target, log, "results/pascal/voc-fcn16s/log.jsonl", "results/pascal/voc-fcn16s/.train")
        k = kill_job(work, [target], "train", work / log, delay, sig=signal.SIGTERM, target="group", wait_for=ckpt)
        job_log = (work / log).read_text()
        print(f"SIGTERM to the process group after {k.delay:.2f} s: exit {k.returncode}\n{job_log[-1500:]}")
        if not k.finished_before_kill and "INFO done in" not in job_log:
            break
    else:
        pytest.fail("training finished before every SIGTERM; the signal never landed mid-run")
    assert k.returncode != 0
    assert "SIGTERM" in job_log, "the trainer did not report the signal"
    assert ckpt.exists(), "no checkpoint on SIGTERM"
    assert not (work / target).exists()
    r = run_smk(work, target, "--rerun-incomplete")
    assert r.returncode == 0, r.stdout[-5000:]
    assert "resuming" in (work / log).read_text(), "the rerun did not resume from the checkpoint"
    _assert_matches_reference(work, ref_digest)


# ------------------------------------------------------------------------------------------------
# full disk
# ------------------------------------------------------------------------------------------------
def _mount_tmpfs(path: Path, size_mb: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}M", "tmpfs", str(path)],
                       capture_output=True, text=True)
    return r.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs mount we can fill; skipped where mounting needs privileges we lack."""
    mnt = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(mnt, 256):
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN); the full-disk case cannot be simulated here")
    yield mnt
    reap(mnt)
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave_bytes: int) -> Path:
    """Take all but `leave_bytes` of the mount's free space."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler.bin"
    with open(filler, "wb") as f:
        f.truncate(0)
        os.posix_fallocate(f.fileno(), 0, max(0, free - leave_bytes))
    return filler


@pytest.mark.parametrize("case", [
    ("extract", "data/extracted/voc2012", "logs/extract/voc2012.log"),
    ("download", "data/raw/vgg16.pth", "logs/download/vgg16.pth.log"),
], ids=lambda c: c[0])
def test_full_disk(case: tuple[str, str, str], demo_run: Path, small_disk: Path, ref_digest: dict[str, str]) -> None:
    name, target, log = case
    work = small_disk / "w"
    shutil.copytree(demo_run, work, symlinks=True, ignore=shutil.ignore_patterns("results"))
    shutil.copytree(demo_run / "results", work / "results", symlinks=True)
    remove(work, target, log)
    filler = _fill(small_disk, 64 * 1024)  # the archive/download needs more than 64 KiB

    r = run_smk(work, target)
    assert r.returncode != 0
    errors = error_lines((work / log).read_text())
    print(f"full disk ({name}): {errors}")
    assert len(errors) == 1, errors
    assert "free disk space" in errors[0] and target.split("/")[-1] in errors[0]
    assert not (work / target).exists(), "a half-written output is at the destination"
    # a partial download stays as <file>.part (not the destination) so the rerun resumes; nothing else
    left = [p for p in leftovers(work) if p != f"{target}.part"]
    assert not left, f"temp files left on the full disk: {left}"

    filler.unlink()  # "free space", then the same command again
    r = run_smk(work, target, "--rerun-incomplete")
    assert r.returncode == 0, r.stdout[-4000:]
    _assert_matches_reference(work, ref_digest)


def test_error_lines_helper() -> None:
    """The helper that the suite's checks rely on: one line per distinct `error:`."""
    text = "x\nerror: a: bad; fix it\nerror: a: bad; fix it\n  error: b\n"
    assert error_lines(text) == ["error: a: bad; fix it", "error: b"]
