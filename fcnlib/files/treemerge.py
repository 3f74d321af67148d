"""Move a finished tree into an existing folder like `tar -C DEST` would — but only if nothing there would be
overwritten: the first clash (in sorted order) is reported and nothing is changed.

A clash is any name present on both sides unless both are real folders (they merge). A symlink in the
destination counts as a clash even when it points at a folder: nothing is ever written through a link.
Files are moved with link()+unlink(), which fails rather than replace a name that appeared meanwhile;
folders absent from the destination are renamed in whole (a rename never replaces a non-empty folder). If
a move fails half-way, what was already moved is taken back out, so the destination is as it was.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path


def first_clash(src: Path, dst: Path) -> str | None:
    """The first relative path (sorted, folders before what they hold) that exists under both `src` and
    `dst` and is not a real folder on both sides; None when `src` merges cleanly into `dst`."""
    for name in sorted(os.listdir(src)):
        try:
            d = os.lstat(dst / name)
        except FileNotFoundError:
            continue
        s = os.lstat(src / name)
        if not (stat.S_ISDIR(s.st_mode) and stat.S_ISDIR(d.st_mode)):
            return name
        deeper = first_clash(src / name, dst / name)
        if deeper is not None:
            return f"{name}/{deeper}"
    return None


def _move(src: Path, dst: Path, placed: list[Path]) -> None:
    for name in sorted(os.listdir(src)):
        s, d = src / name, dst / name
        st = os.lstat(s)
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(d):
                _move(s, d, placed)  # both real folders (first_clash checked)
                continue
            os.rename(s, d)
        else:
            os.link(s, d, follow_symlinks=False)  # EEXIST rather than overwrite
            os.unlink(s)
        placed.append(d)


def merge_into(src: Path, dst: Path) -> list[Path]:
    """Move everything under `src` into the existing folder `dst` (same file system); returns the paths
    made in `dst`. Raises FileExistsError naming the first clash before moving anything; on any other
    failure the moved entries are moved out again (removed) and the error is re-raised."""
    clash = first_clash(src, dst)
    if clash is not None:
        raise FileExistsError(clash)
    placed: list[Path] = []
    try:
        _move(src, dst, placed)
    except BaseException:
        for p in reversed(placed):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        raise
    return placed
