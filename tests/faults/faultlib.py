"""Helpers for the fault-injection suite: copy the reference demo workdir, run Snakemake in the
background, find the job of one rule by its script, kill it (or Snakemake) at a seeded random point, and
compare every output with the uninterrupted reference run.

A `script:` rule runs as `python <workdir>/.snakemake/scripts/tmpXXXX.<script>.py`, so a job is found by
that path prefix and suffix in /proc; its log gets "rule <name> started" once the imports are done
(fcnlib.pipeline.scripting.run), which is where we start the random delay so the kill lands in the real work.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "test.yaml"

#: Outputs that legitimately differ between two runs (wall-clock measurements), with why.
NONDETERMINISTIC = {
    "results/*/*/timing.json": "forward time is measured wall-clock",
    "results/figures/curves_*_time.png": "x axis is training wall time",
    "benchmarks/*": "wall-clock benchmarks",
    "logs/*": "logs hold timestamps",
}
#: JSONL logs are compared with their wall-clock fields removed.
TIMED_LOGS = ("*/log.jsonl",)
TIME_KEYS = ("time", "seconds", "elapsed", "wall")
#: Names that must never be left behind in a finished tree (temp and partial files).
LEFTOVERS = ("*.part", ".*.tmp", "*.tmp", ".*.extract-*", "*extract-*", "resume.pt", "*.partial", ".*.staging",
             ".*.old")


def smk_cmd(work: Path, *args: str, config: Path | str = CONFIG) -> list[str]:
    # A reference reused from an earlier session (FCN_DEMO_RUN) may predate edits to fcnlib, whose code
    # hashes would rerun the whole downstream: there, only mtimes decide what reruns.
    triggers = ["--rerun-triggers=mtime"] if os.environ.get("FCN_DEMO_RUN") else []
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(config), "--cores", "2", *triggers, *args]


def smk_env() -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_smk(work: Path, *args: str, config: Path | str = CONFIG, timeout: int = 600) -> subprocess.CompletedProcess:
    """Snakemake to completion; stdout and stderr merged in `.stdout` (the order a user sees)."""
    return subprocess.run(smk_cmd(work, *args, config=config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, env=smk_env())


def copy_workdir(src: Path, dest: Path) -> Path:
    """A full copy (mtimes kept, so Snakemake sees the same up-to-date tree) of a finished workdir."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def remove(work: Path, *rels: str) -> None:
    for rel in rels:
        p = work / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


# ------------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------------
def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _all_pids() -> Iterable[int]:
    for d in os.listdir("/proc"):
        if d.isdigit():
            yield int(d)


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def job_pids(work: Path, script: str) -> list[int]:
    """Python processes running `<work>/.snakemake/scripts/tmp*.<script>.py` (the job itself, not pool
    workers: those are its children and share the command line, so keep the topmost)."""
    prefix = f"{work.resolve()}/.snakemake/scripts/"
    found = [pid for pid in _all_pids()
             if any(a.startswith(prefix) and a.endswith(f".{script}.py") for a in _cmdline(pid))]
    return [p for p in found if _parent(p) not in found]


def processes_under(work: Path) -> list[int]:
    """Every process whose command line names `work` (ours: Snakemake and its jobs started by the test)."""
    w = str(work.resolve())
    return [pid for pid in _all_pids() if pid != os.getpid() and any(w in a for a in _cmdline(pid))]


def reap(work: Path) -> None:
    """SIGKILL, by pid, leftovers of our runs in `work` (e.g. pool workers orphaned by a SIGKILL)."""
    for pid in processes_under(work):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def reference_seconds(log: Path) -> float:
    """How long the reference job's work took, from the "done in X s" line fcnlib.pipeline.scripting logs."""
    m = re.findall(r"done in ([0-9.]+) s", log.read_text()) if log.exists() else []
    return float(m[-1]) if m else 0.5


@dataclass
class Kill:
    """What happened when we killed a job."""
    returncode: int
    pid: int
    delay: float
    finished_before_kill: bool
    output: str
    notes: list[str] = field(default_factory=list)


def kill_job(work: Path, args: list[str], script: str, log: Path, delay: float, sig: int = signal.SIGKILL,
             target: str = "job", wait_for: Path | None = None, timeout: float = 300,
             wait_started: bool = True) -> Kill:
    """Start Snakemake with `args`, wait until the job running `script` has logged "started" (and
    `wait_for` exists, if given), sleep `delay` s, then send `sig` to the job (target="job"), to Snakemake
    only ("snakemake"), or to Snakemake's whole process group ("group", what SLURM does on preemption).
    Returns after Snakemake exits."""
    out = work / f".fault-{script}-{time.monotonic_ns()}.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen(smk_cmd(work, *args), stdout=fh, stderr=subprocess.STDOUT, text=True,
                                env=smk_env(), start_new_session=True)
    t0 = time.monotonic()
    pid = -1
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"snakemake exited ({proc.returncode}) before the {script} job could be "
                                     f"killed:\n{out.read_text()[-4000:]}")
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"the {script} job never started:\n{out.read_text()[-4000:]}")
            pids = job_pids(work, script)
            ready = pids and (not wait_started or (log.exists() and "started" in log.read_text()))
            if ready and (wait_for is None or wait_for.exists()):
                pid = pids[0]
                break
            time.sleep(0.02)
        time.sleep(delay)
        finished = False
        text = log.read_text() if log.exists() else ""
        notes = ["the job had logged 'done' (killed while exiting)"] if "done in" in text else []
        if "started" not in text:
            notes.append("killed while starting up (before its work)")
        try:
            if target == "job":
                os.kill(pid, sig)
            elif target == "snakemake":
                os.kill(proc.pid, sig)
            else:
                os.killpg(proc.pid, sig)
        except ProcessLookupError:
            finished = True
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text()
    out.unlink()
    return Kill(proc.returncode, pid, delay, finished or proc.returncode == 0, text, notes)


# ------------------------------------------------------------------------------------------------
# comparison
# ------------------------------------------------------------------------------------------------
def _matches(rel: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(Path(rel).name, p) for p in patterns)


def _strip_times(data: bytes) -> bytes:
    lines = []
    for line in data.decode().splitlines():
        obj = json.loads(line)
        lines.append(json.dumps({k: v for k, v in obj.items() if k not in TIME_KEYS}, sort_keys=True))
    return "\n".join(lines).encode()


def tree_digest(work: Path, tops: Iterable[str] = ("data", "results")) -> dict[str, str]:
    """relative path → sha256 of every file under `tops` (links by target), wall-clock files left out."""
    out: dict[str, str] = {}
    for top in tops:
        base = work / top
        for dirpath, dirnames, filenames in os.walk(base):
            for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
                p = Path(dirpath) / name
                rel = p.relative_to(work).as_posix()
                if _matches(rel, NONDETERMINISTIC):
                    continue
                if p.is_symlink():
                    data = b"link:" + os.readlink(p).encode()
                else:
                    data = p.read_bytes()
                    if _matches(rel, TIMED_LOGS):
                        data = _strip_times(data)
                out[rel] = hashlib.sha256(data).hexdigest()
    return out


def diff_trees(ref: dict[str, str], got: dict[str, str]) -> list[str]:
    """Human-readable differences (missing, extra, changed), empty when identical."""
    lines = [f"missing: {k}" for k in sorted(set(ref) - set(got))]
    lines += [f"extra:   {k}" for k in sorted(set(got) - set(ref))]
    lines += [f"differs: {k}" for k in sorted(set(ref) & set(got)) if ref[k] != got[k]]
    return lines


def leftovers(work: Path, tops: Iterable[str] = ("data", "results")) -> list[str]:
    """Temp/partial files that must not survive a finished run."""
    found = []
    for top in tops:
        for p in (work / top).rglob("*"):
            if _matches(p.name, LEFTOVERS):
                found.append(p.relative_to(work).as_posix())
    return sorted(found)


def error_lines(text: str) -> list[str]:
    """The `error: ...` lines fcnlib.pipeline.scripting.run prints (one per failed job), deduplicated."""
    seen: list[str] = []
    for line in text.replace("\r", "\n").splitlines():
        line = line.strip()
        if line.startswith("error: ") and line not in seen:
            seen.append(line)
    return seen


# ------------------------------------------------------------------------------------------------
# bad inputs planted in a copy of the reference workdir, run through the real rules
# ------------------------------------------------------------------------------------------------
REPORT: list[str] = []  # observed messages, printed per case (pytest -s) for the issue note


@dataclass
class Case:
    name: str
    plant: Callable[[Path], str]  # plants the fault in the workdir; returns the path the error must name
    target: str  # the job's declared output (deleted first; must not exist afterwards)
    log: str  # the job's log
    fix: tuple[str, ...]  # words of which at least one must appear in the message (the fix)
    also_absent: tuple[str, ...] = ()  # e.g. files a path traversal would have written


def run_cases(work: Path, cases: list[Case]) -> None:
    named = {}
    for c in cases:
        for rel in (c.target, c.log):
            p = work / rel
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        named[c.name] = c.plant(work)
    r = run_smk(work, "--keep-going", *[c.target for c in cases])
    assert r.returncode != 0, r.stdout[-3000:]
    ran = sorted(set(re.findall(r"^(?:local)?rule (\w+):", r.stdout, re.M)))
    print(f"jobs run: {ran}")
    failures = []
    for c in cases:
        log = work / c.log
        errs = error_lines(log.read_text()) if log.exists() else []
        REPORT.append(f"{c.name}: {errs}")
        print(f"{c.name}: {errs}")
        if len(errs) != 1:
            failures.append(f"{c.name}: expected one error line in {c.log}, got {errs}\n{r.stdout[-2500:]}")
            continue
        msg = errs[0]
        if named[c.name] not in msg:
            failures.append(f"{c.name}: message does not name {named[c.name]}: {msg}")
        if not any(w in msg for w in c.fix):
            failures.append(f"{c.name}: message gives none of the fixes {c.fix}: {msg}")
        if msg not in r.stdout:
            failures.append(f"{c.name}: message not shown on the console")
        if (work / c.target).exists():
            failures.append(f"{c.name}: {c.target} exists after the failure (half-written?)")
        failures += [f"{c.name}: {p} was written" for p in c.also_absent if (work / p).exists()]
    left = [p for p in leftovers(work) if not p.endswith(".part")]
    assert not left, f"temp files left behind: {left}"
    assert not failures, "\n".join(failures)


def first_id(w: Path, dataset: str, split: str) -> str:
    import json

    meta = json.loads((w / f"data/{dataset}/dataset.json").read_text())
    ids = (w / f"data/{dataset}" / meta["splits"][split]["ids"]).read_text().split()
    return ids[0]


def spec_path(w: Path, dataset: str, split: str, kind: str, key: str, iid: str) -> Path:
    import json

    meta = json.loads((w / f"data/{dataset}/dataset.json").read_text())
    spec = meta["splits"][split][kind][key]
    return (w / f"data/{dataset}" / spec["dir"] / f"{iid}{spec['ext']}").resolve()


def replace_file(p: Path, data: bytes) -> None:
    """Swap in a new file, keeping its and its folders' mtimes: the bad file was there all along (bit rot,
    a bad upstream file), so Snakemake must not rerun the producing rule and its whole downstream."""
    keep = [(q, q.stat().st_mtime_ns) for q in (p, *p.parents) if q != q.parent and q.exists()][:8]
    p.unlink()
    p.write_bytes(data)
    for q, ns in keep:
        os.utime(q, ns=(ns, ns))
