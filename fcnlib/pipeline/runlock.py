"""Snakemake's working-folder lock after a killed run: stale or held.

Snakemake locks a folder's inputs and outputs (`.snakemake/locks/*.lock`) for the length of a run and
removes the lock when it ends; a Snakemake killed by SIGKILL (OOM killer, lost node, `kill -9` of its
process group) leaves it, and every later run, `--rerun-incomplete` included, is refused with a
LockException until `snakemake --unlock`. Unlocking while another run is still active in the folder
would let two runs write the same files, so the lock counts as stale only when no process on this
machine is a Snakemake (or one of its jobs) working in that folder. Runs on other machines sharing the
folder (cluster jobs) cannot be seen from here: on a shared folder unlock by hand, knowing none runs.

`python -m fcnlib.pipeline.runlock [DIR]` exits 0 when DIR holds a stale lock (so `snakemake --unlock` is safe:
`make demo` runs it then), 1 when there is no lock or a run holds it (saying which processes).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

PathLike = str | os.PathLike


def lock_files(workdir: PathLike) -> list[Path]:
    """The lock files Snakemake's file persistence keeps in `workdir` (empty when unlocked)."""
    locks = Path(workdir) / ".snakemake" / "locks"
    return sorted(locks.glob("*.lock")) if locks.is_dir() else []


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _is_snakemake(args: list[str]) -> bool:
    """A Snakemake process (`snakemake ...`, `python -m snakemake ...`) or a job it started
    (`python <workdir>/.snakemake/scripts/tmp*.py`, shell jobs under `.snakemake/`)."""
    if any(Path(a).name == "snakemake" for a in args[:2]):
        return True
    if any(args[i] == "-m" and args[i + 1] == "snakemake" for i in range(len(args) - 1)):
        return True
    return any("/.snakemake/" in a or a.startswith(".snakemake/") for a in args)


def active_runs(workdir: PathLike) -> list[int]:
    """Pids of live Snakemake processes (and their jobs) working in `workdir`, this process excepted."""
    target = os.path.realpath(workdir)
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        args = _cmdline(int(d))
        if not args or not _is_snakemake(args):
            continue
        try:
            cwd = os.readlink(f"/proc/{d}/cwd")
        except OSError:
            continue  # gone, or another user's: /proc hides its folder
        if cwd == target or any(os.path.realpath(os.path.join(cwd, a)) == target
                                for a, prev in zip(args[1:], args[:-1], strict=True) if prev in ("-d", "--directory")):
            found.append(int(d))
    return found


def stale_lock(workdir: PathLike) -> bool:
    """`workdir` holds a Snakemake lock that no live run on this machine owns."""
    return bool(lock_files(workdir)) and not active_runs(workdir)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when DIR (default .) holds a stale lock, else 1; one line saying which and why."""
    args = list(sys.argv[1:] if argv is None else argv)
    workdir = Path(args[0] if args else ".")
    if not lock_files(workdir):
        return 1
    pids = active_runs(workdir)
    if pids:
        print(f"{workdir.resolve()}: locked by a Snakemake run still active here (pid {', '.join(map(str, pids))});"
              f" not unlocking", file=sys.stderr)
        return 1
    print(f"{workdir.resolve()}: stale Snakemake lock (its run was killed; no run is active here): unlocking",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
