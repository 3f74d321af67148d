"""Results nobody else can read (issue 23, class 9): every file the pipeline writes gets the mode `open()`
would give it under the process umask (0666 & ~umask; folders 0777 & ~umask), whichever helper writes it —
the atomic writers, torch checkpoints, PNGs, downloads and their records, extracted archives. Only the temp
file of an atomic write is private while it is being written. Fast: no Snakemake."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fcnlib.files import io as fio
from fcnlib.files.archive import safe_extract
from fcnlib.files.download import download, record_path

UMASKS = [0o022, 0o077, 0o002, 0o027]


@contextlib.contextmanager
def umask(m: int) -> Iterator[None]:
    old = os.umask(m)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def _writers(tmp: Path) -> dict[str, Path]:
    """Write one file with each helper; returns name → path."""
    import torch

    out = {}
    with fio.atomic_write(tmp / "a.bin") as f:
        f.write(b"x")
    out["atomic_write"] = tmp / "a.bin"
    fio.atomic_write_text(tmp / "t.txt", "hi\n")
    out["atomic_write_text"] = tmp / "t.txt"
    fio.atomic_write_json(tmp / "deep" / "er" / "j.json", {"a": 1})
    out["atomic_write_json"] = tmp / "deep" / "er" / "j.json"
    fio.atomic_save_torch({"w": torch.zeros(2)}, tmp / "w.pt")
    out["atomic_save_torch"] = tmp / "w.pt"
    fio.write_png(tmp / "p.png", np.zeros((4, 4, 3), np.uint8))
    out["write_png"] = tmp / "p.png"
    fio.write_label_png(tmp / "l.png", np.zeros((4, 4), np.uint8))
    out["write_label_png"] = tmp / "l.png"
    src = tmp / "src.bin"
    src.write_bytes(b"abc")
    fio.place_file(src, tmp / "placed.bin")
    out["place_file"] = tmp / "placed.bin"
    return out


@pytest.mark.parametrize("m", UMASKS, ids=[f"umask{m:03o}" for m in UMASKS])
def test_atomic_writers_follow_the_umask(tmp_path: Path, m: int) -> None:
    with umask(m):
        written = _writers(tmp_path)
    want = 0o666 & ~m
    got = {name: oct(_mode(p)) for name, p in written.items()}
    assert got == {name: oct(want) for name in written}
    for d in (tmp_path / "deep", tmp_path / "deep" / "er"):  # folders the writers made
        assert _mode(d) == 0o777 & ~m


def test_rewrite_takes_the_current_umask(tmp_path: Path) -> None:
    """A rerun under another umask gives the mode a fresh write would (the old file's mode is not kept)."""
    p = tmp_path / "metrics.json"
    with umask(0o077):
        fio.atomic_write_json(p, {"a": 1})
    assert _mode(p) == 0o600
    with umask(0o022):
        fio.atomic_write_json(p, {"a": 2})
    assert _mode(p) == 0o644


def test_temp_file_is_private_while_written(tmp_path: Path) -> None:
    with umask(0o002), fio.atomic_write(tmp_path / "x.bin") as f:
        f.write(b"partial")
        tmps = [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]
        assert len(tmps) == 1 and _mode(tmps[0]) == 0o600
    assert _mode(tmp_path / "x.bin") == 0o664


@pytest.mark.parametrize("m", [0o022, 0o077, 0o002])
def test_download_and_its_record_follow_the_umask(tmp_path: Path, m: int) -> None:
    src = tmp_path / "mirror" / "SiftFlowDataset.zip"
    src.parent.mkdir()
    src.write_bytes(b"z" * 1000)
    dest = tmp_path / "raw" / "SiftFlowDataset.zip"
    with umask(m):
        download([src.as_uri()], dest, progress=False)
    assert _mode(dest) == 0o666 & ~m
    assert _mode(record_path(dest)) == 0o666 & ~m
    assert _mode(dest.parent) == 0o777 & ~m


@pytest.mark.parametrize("m", [0o022, 0o077, 0o002])
def test_extracted_tree_follows_the_umask(tmp_path: Path, m: int) -> None:
    arc = tmp_path / "a.tar"
    with tarfile.open(arc, "w") as tf:
        for name, mode in (("d/f.txt", 0o666), ("d/run.sh", 0o777)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = 3, mode
            tf.addfile(ti, io.BytesIO(b"abc"))
    with umask(m):
        out = safe_extract(arc, tmp_path / "out")
    assert _mode(out / "d" / "f.txt") == 0o644 & ~m
    assert _mode(out / "d" / "run.sh") == 0o755 & ~m
    assert _mode(out / "d") == 0o777 & ~m
