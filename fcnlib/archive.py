"""Safe, all-or-nothing extraction of .tar / .tar.gz / .tgz / .zip archives.

Members are checked by our own rules first (so the error names the archive, the member and the fix) and,
for tar, by tarfile's "data" filter as a second line. Everything is extracted into a temp dir beside
`dest` and renamed to `dest` only when complete: a killed run never leaves a tree that looks finished, and
its temp dir (named with the dead process's pid) is removed by the next run.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from .errors import DataError

_TMP_MARK = ".extract-"


def _fix(archive: Path) -> str:
    return f"the archive is unsafe or not the expected file; delete {archive} and rerun the download"


def _corrupt(archive: Path, e: BaseException) -> DataError:
    return DataError(f"{archive}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                     f"re-download: delete {archive} and rerun")


def _check_name(archive: Path, name: str) -> str:
    """Normalised relative member path; refuses absolute paths and anything that climbs out with '..'."""
    n = name.replace("\\", "/")
    if n.startswith("/") or (len(n) > 1 and n[1] == ":"):
        raise DataError(f"{archive}: member {name!r} has an absolute path; refusing to extract — "
                        + _fix(archive))
    norm = posixpath.normpath(n)
    if norm == ".." or norm.startswith("../") or ".." in n.split("/"):
        raise DataError(f"{archive}: member {name!r} contains '..' and would be written outside the "
                        f"target folder; refusing to extract — " + _fix(archive))
    return norm


def _check_link(archive: Path, name: str, target: str, hard: bool) -> None:
    """A link target must stay inside the tree (symlinks resolve from the member's folder, hardlinks from
    the archive root)."""
    kind = "hardlink" if hard else "symlink"
    t = target.replace("\\", "/")
    base = "" if hard else posixpath.dirname(posixpath.normpath(name.replace("\\", "/")))
    resolved = posixpath.normpath(posixpath.join(base, t))
    if t.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise DataError(f"{archive}: member {name!r} is a {kind} to {target!r}, outside the extracted "
                        f"tree; refusing to extract — " + _fix(archive))


def _tmp_dirs(dest: Path) -> list[Path]:
    return list(dest.parent.glob(f".{dest.name}{_TMP_MARK}*"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(dest: Path) -> None:
    """Remove temp dirs left by killed extractions of `dest` (their pid is no longer running)."""
    for d in _tmp_dirs(dest):
        suffix = d.name.rsplit(_TMP_MARK, 1)[-1]
        pid = int(suffix.split(".")[0]) if suffix.split(".")[0].isdigit() else -1
        if pid == os.getpid() or not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def _extract_tar(archive: Path, tmp: Path) -> None:
    def guard(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        _check_name(archive, member.name)
        if member.issym() or member.islnk():
            _check_link(archive, member.name, member.linkname, hard=member.islnk())
        elif member.ischr() or member.isblk() or member.isfifo() or not (member.isfile() or member.isdir()):
            raise DataError(f"{archive}: member {member.name!r} is a device/fifo/special file; refusing "
                            f"to extract — " + _fix(archive))
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError as e:
            raise DataError(f"{archive}: member {member.name!r} refused by tarfile's data filter ({e}); "
                            + _fix(archive)) from None

    try:
        with tarfile.open(archive, "r:*") as tf:
            tf.extractall(tmp, filter=guard)
    except DataError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:
        raise _corrupt(archive, e) from None
    except OSError as e:  # disk full, permissions: not the archive's fault
        raise DataError(f"{tmp}: cannot extract {archive} ({e}); free disk space or fix permissions "
                        f"on {tmp.parent} and rerun (if the archive itself is damaged: delete it and "
                        f"rerun the download)") from None


_ZIP_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, OSError, ValueError)


def _copy_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path) -> None:
    """Copy one member; read failures mean a corrupt archive, write failures a local disk problem."""
    try:
        src = zf.open(info)
    except _ZIP_READ_ERRORS as e:
        raise _corrupt(archive, e) from None
    with src:
        try:
            dst = open(out, "wb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise DataError(f"{out}: cannot write while extracting {archive} ({e}); free disk space or "
                            f"fix permissions and rerun") from None
        with dst:
            while True:
                try:
                    buf = src.read(1 << 20)
                except _ZIP_READ_ERRORS as e:
                    raise _corrupt(archive, e) from None
                if not buf:
                    break
                try:
                    dst.write(buf)
                except OSError as e:
                    raise DataError(f"{out}: cannot write while extracting {archive} ({e}); free disk "
                                    f"space or fix permissions and rerun") from None


def _extract_zip(archive: Path, tmp: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            plan: list[tuple[zipfile.ZipInfo, str, int]] = []
            for info in infos:  # check every member before writing any
                rel = _check_name(archive, info.filename)
                mode = info.external_attr >> 16 if info.create_system == 3 else 0
                if stat.S_ISLNK(mode):
                    _check_link(archive, info.filename, zf.read(info).decode("utf-8", "replace"), hard=False)
                elif stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise DataError(f"{archive}: member {info.filename!r} is a device/fifo/special file; "
                                    f"refusing to extract — " + _fix(archive))
                plan.append((info, rel, mode))
            root = tmp.resolve()
            for info, rel, mode in plan:
                out = tmp / rel
                if not out.resolve().is_relative_to(root):  # e.g. through an in-tree symlink
                    raise DataError(f"{archive}: member {info.filename!r} resolves outside the target "
                                    f"folder; refusing to extract — " + _fix(archive))
                if info.is_dir() or rel == ".":
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                if stat.S_ISLNK(mode):
                    os.symlink(zf.read(info).decode("utf-8"), out)
                    continue
                _copy_member(archive, zf, info, out)
                if mode & 0o111:
                    out.chmod(0o755)
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as e:
        raise _corrupt(archive, e) from None


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract `archive` (.tar, .tar.gz/.tgz, .zip) to `dest` all-or-nothing; returns `dest`.

    An unsafe member or a corrupt archive raises DataError and leaves `dest` untouched. An existing
    `dest` is replaced only after the new tree is complete.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found; run the download rule for it first")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(dest)
    tmp = dest.parent / f".{dest.name}{_TMP_MARK}{os.getpid()}"
    tmp.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        if dest.exists() or dest.is_symlink():
            old = dest.parent / f".{dest.name}{_TMP_MARK}{os.getpid()}.old"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):  # make the rename durable
        fd = os.open(dest.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return dest


def cli(argv: list[str] | None = None) -> int:
    """`fcn extract ARCHIVE -o DEST`: safe, all-or-nothing extraction."""
    from .cliopts import Parser, add_out

    p = Parser(prog="fcn extract", description=cli.__doc__)
    p.add_argument("archive", type=Path, help="tar (.tar, .tgz, .tar.gz, …) or zip archive")
    add_out(p, "folder to create (replaced if present)", required=True, type=Path)
    a = p.parse_args(argv)
    print(safe_extract(a.archive, a.out))
    return 0
