"""Shared helpers for the hostile-input tests: run `fcn ...` as a user would and read its one error line,
list every file under a folder (to prove nothing landed outside a target), and build hostile archives and
images in their real formats."""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fcn(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`fcn ARGS...` in a subprocess (`python -m fcnlib`: what the entry point runs), stdout and stderr apart."""
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "fcnlib", *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


def one_error(r: subprocess.CompletedProcess) -> str:
    """The CLI must exit 2 with exactly one line on stderr, `error: ...`, and no traceback."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errs = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errs) == 1, r.stderr[-3000:]
    return errs[0]


def files_under(root: Path) -> set[str]:
    """Every path below root (links not followed), relative."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


# hostile files, built in their real formats
def tar_info(name: str, type_: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type, t.linkname, t.size = type_, link, size
    return t


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w",
               fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, mode, format=fmt) as tf:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def long_chain_tar(path: Path, depth: int = 16) -> Path:
    """The tarfile data-filter bypass (fixed in 3.11.13 / 3.12.11): folders with 247-character names, each
    with a one-letter symlink to it, so the resolved path passes PATH_MAX and realpath stops resolving;
    then `lll… → ../×depth` at the bottom, `escape → <chain>/lll…/..` and a file below `escape`."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"[:depth]
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    path_ = ""
    for s in steps:
        members.append((tar_info(f"{path_}{comp}", tarfile.DIRTYPE), None))
        members.append((tar_info(f"{path_}{s}", tarfile.SYMTYPE, comp), None))
        path_ += comp + "/"
    linkpath = "/".join(steps)
    members.append((tar_info(f"{linkpath}/{'l' * 254}", tarfile.SYMTYPE, "../" * depth), None))
    members.append((tar_info("escape", tarfile.SYMTYPE, f"{linkpath}/{'l' * 254}/.."), None))
    members.append((tar_info("escape/PWNED.txt"), b"pwned"))
    return write_tar(path, members)


def zip_read_chain(path: Path, depth: int = 8) -> Path:
    """`l0 → .`, `l0/l1 → .`, … then `l0/…/l7/img.jpg → ../…/etc/passwd`: reading the tree reads /etc/passwd."""
    with zipfile.ZipFile(path, "w") as zf:
        prefix = ""
        for i in range(depth):
            info = zipfile.ZipInfo(f"{prefix}l{i}")
            info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, ".")
            prefix += f"l{i}/"
        info = zipfile.ZipInfo(f"{prefix}img.jpg")
        info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../" * 12 + "etc/passwd")
    return path


def big_png(path: Path, w: int, h: int, bit_depth: int = 8, colour: int = 0) -> Path:
    """A real, complete, all-zero PNG of w×h written row by row (a 13000×13000 grey one is ~170 KB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + w * (bit_depth // 8) * (3 if colour == 2 else 1))
    z = zlib.compressobj(9)
    parts = [z.compress(row) for _ in range(h)] + [z.flush()]
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, colour, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path
