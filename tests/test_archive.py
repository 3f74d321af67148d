"""fcnlib.files.archive.safe_extract: hostile members refused, all-or-nothing, corrupt input, kill -9 mid-way."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from fcnlib.errors import DataError
from fcnlib.files.archive import safe_extract

REPO = Path(__file__).resolve().parents[1]


def _tree(root: Path) -> dict[str, str]:
    """relative path → sha256 (or 'link:<target>' / 'dir') for every entry under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"", **kw: object) -> None:
    ti = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(ti, k, v)
    if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)


def _make_tar(path: Path, members: list[tuple[str, bytes, dict]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data, kw in members:
            _add(tf, name, data, **kw)
    return path


GOOD = [("root/a.txt", b"alpha", {}), ("root/sub/b.bin", bytes(range(256)) * 10, {}),
        ("root/link", b"", {"type": tarfile.SYMTYPE, "linkname": "sub/b.bin"})]


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_good_tar_extracts(tmp_path: Path, suffix: str, mode: str) -> None:
    arc = _make_tar(tmp_path / f"a{suffix}", GOOD, mode)
    out = safe_extract(arc, tmp_path / "x")
    assert out == tmp_path / "x"
    assert (out / "root/a.txt").read_bytes() == b"alpha"
    assert (out / "root/link").read_bytes() == bytes(range(256)) * 10  # in-tree symlink kept
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_good_zip_extracts_and_replaces_existing(tmp_path: Path) -> None:
    arc = tmp_path / "a.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/one.txt", "1")
        zf.writestr("d/e/two.txt", "22")
    dest = tmp_path / "x"
    (dest / "stale").mkdir(parents=True)
    safe_extract(arc, dest)
    assert _tree(dest) == {"d": "dir", "d/e": "dir", "d/e/two.txt": hashlib.sha256(b"22").hexdigest(),
                           "d/one.txt": hashlib.sha256(b"1").hexdigest()}


HOSTILE_TAR = {
    "dotdot": ("../evil.txt", {}),
    "dotdot_inner": ("root/../../evil.txt", {}),
    "absolute": ("/tmp/fcn_abs_evil.txt", {}),
    "symlink_out": ("root/ln", {"type": tarfile.SYMTYPE, "linkname": "../../evil.txt"}),
    "symlink_abs": ("root/ln", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
    "hardlink_out": ("root/hl", {"type": tarfile.LNKTYPE, "linkname": "../evil.txt"}),
    "chardev": ("root/dev", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}),
    "fifo": ("root/fifo", {"type": tarfile.FIFOTYPE}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TAR))
def test_hostile_tar_refused(tmp_path: Path, case: str) -> None:
    name, kw = HOSTILE_TAR[case]
    work = tmp_path / "work"
    work.mkdir()
    # A good member first: it must not survive at dest either.
    arc = _make_tar(tmp_path / "evil.tar", [("root/ok.txt", b"ok", {}), (name, b"evil", kw)])
    with pytest.raises(DataError) as ei:
        safe_extract(arc, work / "dest")
    msg = str(ei.value)
    assert str(arc) in msg and repr(name) in msg and "delete" in msg
    assert list(work.iterdir()) == []  # no dest, no temp dir
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/fcn_abs_evil.txt").exists()


def _zip_with(path: Path, name: str, data: bytes, mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("root/ok.txt", "ok")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.create_system = 3
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize("name,data,mode", [
    ("../evil.txt", b"evil", None),
    ("root/../../evil.txt", b"evil", None),
    ("/tmp/fcn_abs_evil.txt", b"evil", None),
    ("..\\evil.txt", b"evil", None),
    ("root/ln", b"../../evil.txt", stat.S_IFLNK | 0o777),
    ("root/fifo", b"", stat.S_IFIFO | 0o644),
])
def test_zip_slip_refused(tmp_path: Path, name: str, data: bytes, mode: int | None) -> None:
    work = tmp_path / "work"
    work.mkdir()
    arc = _zip_with(tmp_path / "evil.zip", name, data, mode)
    with pytest.raises(DataError) as ei:
        safe_extract(arc, work / "dest")
    assert str(arc) in str(ei.value) and repr(name) in str(ei.value)
    assert list(work.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/fcn_abs_evil.txt").exists()


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tgz", "w:gz"), (".zip", None)])
def test_truncated_archive(tmp_path: Path, suffix: str, mode: str | None) -> None:
    arc = tmp_path / f"a{suffix}"
    big = os.urandom(200_000)
    if mode is None:
        with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("a.bin", big)
            zf.writestr("b.bin", big)
    else:
        _make_tar(arc, [("a.bin", big, {}), ("b.bin", big, {})], mode)
    raw = arc.read_bytes()
    arc.write_bytes(raw[: len(raw) * 2 // 3] if mode is not None else raw[:150_000] + raw[-5000:])
    with pytest.raises(DataError, match="re-download: delete .* and rerun") as ei:
        safe_extract(arc, tmp_path / "x")
    assert str(arc) in str(ei.value)
    assert not (tmp_path / "x").exists()
    assert [p.name for p in tmp_path.iterdir()] == [arc.name]


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="archive not found"):
        safe_extract(tmp_path / "nope.tar", tmp_path / "x")


def test_sigkill_mid_extraction_then_rerun(tmp_path: Path) -> None:
    members = [(f"root/f{i:03d}.bin", hashlib.sha256(str(i).encode()).digest() * 500, {}) for i in range(60)]
    arc = _make_tar(tmp_path / "a.tgz", members, "w:gz")
    ref = _tree(safe_extract(arc, tmp_path / "ref"))
    dest = tmp_path / "out" / "x"
    # The child is slowed (sleep per extracted file) only so the kill lands mid-way deterministically.
    code = ("import sys, time, tarfile\n"
            "orig = tarfile.copyfileobj\n"
            "def slow(*a, **k):\n    time.sleep(0.05)\n    return orig(*a, **k)\n"
            "tarfile.copyfileobj = slow\n"
            "from fcnlib.files.archive import safe_extract\n"
            "safe_extract(sys.argv[1], sys.argv[2])\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(arc), str(dest)], env=env)
    deadline = time.monotonic() + 20
    tmps: list[Path] = []
    while time.monotonic() < deadline:
        tmps = list(dest.parent.glob(".x.extract-*")) if dest.parent.exists() else []
        if tmps and len(list(tmps[0].rglob("*.bin"))) >= 5:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not dest.exists() and len(tmps) == 1 and tmps[0].exists()  # half tree only in the temp dir
    assert 5 <= len(list(tmps[0].rglob("*.bin"))) < 60
    safe_extract(arc, dest)
    assert _tree(dest) == ref
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x"]  # stale temp dir cleaned


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fcnlib.cli.extract import cli

    arc = _make_tar(tmp_path / "a.tar", GOOD)
    assert cli([str(arc), "-o", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "root" / "a.txt").read_bytes() == b"alpha"
    assert str(tmp_path / "x") in capsys.readouterr().out
