"""Safe, all-or-nothing extraction of .tar / .tar.gz / .tgz / .zip archives.

Every member is checked by our own rules before anything of it is written, so the error names the
archive, the member and the fix. The rules do not depend on the Python version (tarfile's "data" filter
can be bypassed on Python < 3.11.13 / 3.12.11 with long symlink chains, so it is not relied on):

* names: no absolute paths, no '..', no NUL, no duplicates, no file and folder of the same name, no
  member below a symlink member (nothing is ever written or read *through* a link);
* links: a hardlink must name a regular file member earlier in the archive; a symlink is resolved against
  the archive's own member list (which is exactly the tree that will exist), link by link, and must end
  at a member inside the tree. Symlinks are created last, after every regular file is written, so no
  write ever follows one;
* sizes: caps on the member count, the total (apparent, so sparse members count in full) size and the
  expansion ratio, and the free disk space is checked before writing; a tar metadata block (PAX header,
  GNU long name/link) is refused by its declared size before tarfile reads it into memory (settings in
  `Limits`, each with an environment variable to raise it);
* names the file system cannot hold (a part over NAME_MAX, a path over PATH_MAX) are refused up front,
  naming the member.

Everything is extracted into a temp dir beside `dest` and renamed to `dest` only when complete: a killed
run never leaves a tree that looks finished, and its temp dir (named with the dead process's pid) is
removed by the next run.

Over ~400 lines on purpose: one safety boundary. The tar and zip extractors share _Plan's member rules and
_Sink's caps; split, the rules a reviewer must read together would sit in two files.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import lzma
import os
import posixpath
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fcnlib.errors import DataError
from fcnlib.files.envcaps import env_int
from fcnlib.files.paths import open_regular
from fcnlib.files.treemerge import merge_into

_TMP_MARK = ".extract-"
_MAX_HOPS = 40  # symlinks followed while resolving one target (Linux's own limit)
_MAX_LINK_TARGET = 4096
_FREE_MARGIN = 4 << 20  # keep this much disk free after the extraction


@dataclass(frozen=True)
class Limits:
    """What one archive may expand to. The defaults fit every dataset of the paper with a wide margin
    (VOC2012: 17k images, 2 GB, ratio ~1); raise them with the environment variables named in the
    error messages."""

    max_bytes: int = field(default_factory=lambda: env_int("FCN_EXTRACT_MAX_BYTES", 200 << 30, "bytes"))
    max_members: int = field(default_factory=lambda: env_int("FCN_EXTRACT_MAX_MEMBERS", 2_000_000, "members"))
    max_ratio: int = field(default_factory=lambda: env_int("FCN_EXTRACT_MAX_RATIO", 100))
    #: a tar's metadata blocks (PAX records, GNU long names/links) are read whole into memory by tarfile:
    #: the size their header declares is capped before that read (real ones are a few hundred bytes)
    max_header: int = field(default_factory=lambda: env_int("FCN_EXTRACT_MAX_HEADER_BYTES", 1 << 20, "bytes"))
    ratio_floor: int = 64 << 20  # a small tree may compress well (synthetic data): the ratio counts above this


def _size(n: int) -> str:
    return f"{n} B" if n < 1 << 20 else f"{n / 2**20:.1f} MiB"


def _fix(archive: Path) -> str:
    return f"the archive is unsafe or not the expected file; delete {archive} and rerun the download"


def _refuse(archive: Path, name: str, problem: str) -> DataError:
    return DataError(f"{archive}: member {name!r} {problem}; refusing to extract — " + _fix(archive))


def _corrupt(archive: Path, e: BaseException) -> DataError:
    return DataError(f"{archive}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                     f"re-download: delete {archive} and rerun")


class _WriteFailed(DataError):
    """Writing `out` (inside the temp tree) failed; `_user_error` turns it into the message about the
    member and the folder the user asked for (the temp tree is gone by the time anyone reads it)."""

    def __init__(self, out: Path, archive: Path, e: OSError) -> None:
        super().__init__(f"{out}: {e.strerror or e}")
        self.out, self.archive, self.os_error = out, archive, e


def _disk_error(out: Path, archive: Path, e: OSError) -> _WriteFailed:
    return _WriteFailed(out, archive, e)


def _user_error(w: _WriteFailed, tmp: Path, dest: Path) -> DataError:
    """One line naming the member, the target folder and the real cause of a failed write."""
    e, archive = w.os_error, w.archive
    try:
        member = repr(w.out.relative_to(tmp).as_posix())
    except ValueError:
        member = "its members"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DataError(f"{dest}: no space left on the disk while extracting {archive} (at member {member}); "
                         f"free disk space on {dest.parent} (the partial tree was removed) and rerun")
    if e.errno == errno.ENAMETOOLONG:
        return DataError(f"{archive}: member {member} has a name too long for the file system under {dest}; "
                         f"refusing to extract (nothing was written) — extract to a shorter folder path, or the "
                         f"archive is not the expected file: delete it and rerun the download")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DataError(f"{dest}: cannot write member {member} of {archive} ({e.strerror}); make {dest.parent} "
                         f"writable (permissions, read-only file system) and rerun")
    return DataError(f"{dest}: cannot write member {member} of {archive} ({e.strerror or e}); check the disk "
                     f"under {dest.parent} and rerun")


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(path, name))
    except (OSError, ValueError):
        return default


def _check_name(archive: Path, name: str) -> str:
    """Normalised relative member path; refuses absolute paths, NUL and anything that climbs out with '..'."""
    if "\x00" in name:
        raise _refuse(archive, name, "has a NUL character in its name")
    n = name.replace("\\", "/")
    if n.startswith("/") or (len(n) > 1 and n[1] == ":"):
        raise DataError(f"{archive}: member {name!r} has an absolute path; refusing to extract — "
                        + _fix(archive))
    norm = posixpath.normpath(n)
    if norm == ".." or norm.startswith("../") or ".." in n.split("/"):
        raise DataError(f"{archive}: member {name!r} contains '..' and would be written outside the "
                        f"target folder; refusing to extract — " + _fix(archive))
    return norm


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


class _Plan:
    """The tree an archive describes, built member by member and checked before each one is written."""

    def __init__(self, archive: Path, tmp: Path, limits: Limits, est_bytes: int, dest: Path) -> None:
        self.archive, self.tmp, self.limits, self.dest = archive, tmp, limits, dest
        self.kind: dict[str, str] = {"": "d"}  # rel path -> "d" | "f" | "l" ; "" is the root
        self.links: dict[str, tuple[str, str]] = {}  # symlink rel -> (target, member name)
        self.members = 0
        self.bytes = 0
        self.arc_size = max(archive.stat().st_size, 1)
        self.free = shutil.disk_usage(tmp).free
        self.name_max = _pathconf(tmp, "PC_NAME_MAX", 255)
        # room for a member's relative path under both the temp tree and the final folder
        self.path_room = _pathconf(tmp, "PC_PATH_MAX", 4096) - 2 - max(len(os.fsencode(tmp)), len(os.fsencode(dest)))
        self._need_space(est_bytes, "the archive")

    def _need_space(self, nbytes: int, what: str) -> None:
        if nbytes + _FREE_MARGIN > self.free:
            raise DataError(f"{self.dest}: not enough free disk space to extract {self.archive} ({what} "
                            f"needs {_size(nbytes + _FREE_MARGIN)} with the margin, {_size(self.free)} free); "
                            f"free disk space and rerun")

    def add(self, name: str, kind: str, size: int = 0, target: str | None = None) -> str:
        """Register one member (kind "d", "f", "h" hardlink or "l" symlink); returns its relative path."""
        a, lim = self.archive, self.limits
        rel = _check_name(a, name)
        if rel == ".":
            if kind != "d":
                raise _refuse(a, name, "names the archive root but is not a folder")
            return ""
        self.members += 1
        if self.members > lim.max_members:
            raise DataError(f"{a}: more than {lim.max_members} members (the limit); refusing to extract — "
                            f"if the archive is genuine, raise FCN_EXTRACT_MAX_MEMBERS and rerun")
        if size < 0:
            raise _refuse(a, name, f"has a negative size {size}")
        self.bytes += size
        if self.bytes > lim.max_bytes:
            raise DataError(f"{a}: expands to more than {lim.max_bytes} B (the limit, reached at member "
                            f"{name!r}); refusing to extract — if the archive is genuine, raise "
                            f"FCN_EXTRACT_MAX_BYTES and rerun")
        if self.bytes > max(lim.max_ratio * self.arc_size, lim.ratio_floor):
            raise DataError(f"{a}: expands more than {lim.max_ratio}× its size of {self.arc_size} B (reached at "
                            f"member {name!r}, {self.bytes} B): a compression bomb or sparse-file bomb; "
                            f"refusing to extract — delete {a} and rerun the download (if it is genuine, "
                            f"raise FCN_EXTRACT_MAX_RATIO)")
        if size:
            self._need_space(self.bytes, f"member {name!r} brings the total to")
        parts = rel.split("/")
        self._check_length(name, rel, parts)
        for i in range(1, len(parts)):  # every parent must be (or become) a plain folder
            parent = "/".join(parts[:i])
            k = self.kind.get(parent)
            if k == "l":
                raise _refuse(a, name, f"lies below the symlink member {parent!r} (it would be written or read "
                                       f"through the link)")
            if k in ("f", "h"):
                raise _refuse(a, name, f"needs {parent!r} as a folder, but the archive also has a file of "
                                       f"that name")
            if k is None:
                self.kind[parent] = "d"
        old = self.kind.get(rel)
        if old is not None:
            if old == "d" and kind == "d":
                return rel  # a folder listed twice (or after its contents) is harmless
            what = {"d": "a folder", "f": "a file", "h": "a file", "l": "a symlink"}[old]
            raise _refuse(a, name, f"appears twice (already {what} of that name); a duplicate would silently "
                                   f"replace the first")
        if kind == "h":
            t = posixpath.normpath((target or "").replace("\\", "/"))
            if not target or t.startswith(("/", "../")) or t == ".." or "\x00" in t:
                raise _refuse(a, name, f"is a hardlink to {target!r}, outside the extracted tree")
            if self.kind.get(t) != "f":
                raise _refuse(a, name, f"is a hardlink to {target!r}, which is not a regular file earlier in "
                                       f"the archive")
        self.kind[rel] = kind
        if kind == "l":
            self.links[rel] = (target or "", name)
        return rel

    def _check_length(self, name: str, rel: str, parts: list[str]) -> None:
        """Names the file system cannot hold are refused here, before anything is written, naming the member
        (an ENAMETOOLONG mid-extraction would point at the temp tree, not at the cause)."""
        longest = max(len(os.fsencode(p)) for p in parts)
        if longest > self.name_max:
            raise _refuse(self.archive, name, f"has a name part of {longest} bytes, longer than the {self.name_max} "
                                              f"bytes the file system under {self.dest.parent} allows")
        if len(os.fsencode(rel)) > self.path_room:
            raise _refuse(self.archive, name, f"has a path of {len(os.fsencode(rel))} bytes, too long to create "
                                              f"under {self.dest} (PATH_MAX)")

    def _resolve(self, rel: str) -> str:
        """Where the symlink `rel` points in the final tree, following links as the kernel would; raises
        when the walk leaves the tree, loops, or ends at nothing."""
        target, name = self.links[rel]
        if not target or target.startswith("/") or "\x00" in target or (len(target) > 1 and target[1] == ":"):
            raise _refuse(self.archive, name, f"is a symlink to {target!r}, outside the extracted tree")
        cur = rel.split("/")[:-1]
        todo = target.replace("\\", "/").split("/")[::-1]
        hops = 0
        while todo:
            c = todo.pop()
            if c in ("", "."):
                continue
            if c == "..":
                if not cur:
                    raise _refuse(self.archive, name, f"is a symlink to {target!r}, outside the extracted tree")
                cur.pop()
                continue
            here = "/".join([*cur, c])
            k = self.kind.get(here)
            if k is None:
                raise _refuse(self.archive, name, f"is a symlink to {target!r}, which is not in the archive")
            if k == "l":
                hops += 1
                if hops > _MAX_HOPS:
                    raise _refuse(self.archive, name, f"is a symlink to {target!r} that loops")
                t2 = self.links[here][0]
                if not t2 or t2.startswith("/"):
                    raise _refuse(self.archive, name, f"is a symlink to {target!r}, outside the extracted tree")
                todo.extend(t2.replace("\\", "/").split("/")[::-1])
                continue
            if k in ("f", "h") and any(x not in ("", ".") for x in todo):
                raise _refuse(self.archive, name, f"is a symlink to {target!r}, through a file")
            cur.append(c)
        return "/".join(cur)

    def make_links(self) -> None:
        """Create every symlink, last, once all of them resolve inside the tree."""
        for rel in self.links:
            self._resolve(rel)
        for rel, (target, _name) in self.links.items():
            out = self.tmp / rel
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(target, out)
            except OSError as e:
                raise _disk_error(out, self.archive, e) from None


class _Sink:
    """A write-only file object whose failures are reported as the local disk's (not the archive's)."""

    def __init__(self, out: Path, archive: Path, mode: int) -> None:
        self.out, self.archive = out, archive
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
        except OSError as e:
            raise _disk_error(out, archive, e) from None
        self.f = os.fdopen(fd, "wb")

    def write(self, buf: bytes) -> int:
        try:
            return self.f.write(buf)
        except OSError as e:
            raise _disk_error(self.out, self.archive, e) from None

    def close(self) -> None:
        try:
            self.f.close()
        except OSError as e:
            raise _disk_error(self.out, self.archive, e) from None


def _mkdir(out: Path, archive: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _disk_error(out, archive, e) from None


_META_TYPES = {tarfile.XHDTYPE: "a PAX header", tarfile.XGLTYPE: "a global PAX header",
               tarfile.SOLARIS_XHDTYPE: "a PAX header", tarfile.GNUTYPE_LONGNAME: "a GNU long name",
               tarfile.GNUTYPE_LONGLINK: "a GNU long link name"}


class _Budget:
    """The archive stream as tarfile sees it while it processes one member's metadata: reads past `left`
    bytes (a sparse map or a chain of extension blocks without end) are refused, and a short read (the
    archive ends inside the metadata) is a ReadError rather than an IndexError deep in tarfile."""

    def __init__(self, f: object, left: int, over: DataError) -> None:
        self.f, self.left, self.over = f, left, over

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.left:
            raise self.over
        buf = self.f.read(n)
        self.left -= len(buf)
        if len(buf) < n:
            raise tarfile.ReadError("the archive ends inside a member's header")
        return buf

    def __getattr__(self, name: str) -> object:
        return getattr(self.f, name)


class _CappedTarInfo(tarfile.TarInfo):
    """tarfile reads a metadata block whole (`fileobj.read(size)`): refuse one whose declared size is over
    the cap before that read; and while one member's metadata is processed (PAX records, GNU long names,
    sparse maps and extension blocks, which tarfile reads in loops the header itself does not bound), the
    stream allows at most twice the cap. `archive` and `cap` are set per extraction (_capped)."""

    archive: Path
    cap: int

    def _over(self, what: str) -> DataError:
        return DataError(f"{self.archive}: {what} at offset {self.offset} (over the limit of {self.cap} B; genuine "
                         f"ones are a few hundred bytes); refusing to extract — " + _fix(self.archive)
                         + " (if it is genuine, raise FCN_EXTRACT_MAX_HEADER_BYTES)")

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        kind = _META_TYPES.get(self.type)
        if kind is not None and self.size > self.cap:
            raise self._over(f"{kind} of {self.size} B")
        if (kind is None and self.type != tarfile.GNUTYPE_SPARSE) or isinstance(tf.fileobj, _Budget):
            return super()._proc_member(tf)
        real = tf.fileobj
        tf.fileobj = _Budget(real, 2 * self.cap + tarfile.BLOCKSIZE, self._over("a member's metadata runs past 2×"
                                                                                 " the header limit"))
        try:
            return super()._proc_member(tf)
        finally:
            tf.fileobj = real


def _capped(archive: Path, limits: Limits) -> type[tarfile.TarInfo]:
    return type("_CappedTarInfo", (_CappedTarInfo,), {"archive": archive, "cap": limits.max_header})


def _extract_tar(archive: Path, fh: BinaryIO, tmp: Path, limits: Limits, dest: Path) -> None:
    plan = _Plan(archive, tmp, limits, os.fstat(fh.fileno()).st_size if not _is_compressed(fh) else 0, dest)
    try:
        with tarfile.open(fileobj=fh, mode="r:*", tarinfo=_capped(archive, limits)) as tf:
            for m in tf:
                if m.isdir():
                    rel = plan.add(m.name, "d")
                    _mkdir(tmp / rel, archive)
                elif m.isfile():
                    rel = plan.add(m.name, "f", size=m.size)
                    out = tmp / rel
                    _mkdir(out.parent, archive)
                    sink = _Sink(out, archive, 0o755 if m.mode & 0o111 else 0o644)
                    try:
                        src = tf.extractfile(m)
                        tarfile.copyfileobj(src, sink, m.size, tarfile.ReadError)
                    finally:
                        sink.close()
                    with contextlib.suppress(OSError, OverflowError, ValueError):
                        os.utime(out, (m.mtime, m.mtime))
                elif m.islnk():
                    rel = plan.add(m.name, "h", target=m.linkname)
                    out = tmp / rel
                    _mkdir(out.parent, archive)
                    try:
                        os.link(tmp / posixpath.normpath(m.linkname.replace("\\", "/")), out, follow_symlinks=False)
                    except OSError as e:
                        raise _disk_error(out, archive, e) from None
                elif m.issym():
                    plan.add(m.name, "l", target=m.linkname)
                else:
                    raise _refuse(archive, m.name, "is a device/fifo/special file")
            plan.make_links()
    except DataError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, ValueError) as e:
        raise _corrupt(archive, e) from None  # ValueError: tarfile's own parsers (numbers in a sparse map)
    except OSError as e:  # a read error of the archive itself (writes are reported by _Sink/_disk_error)
        raise _corrupt(archive, e) from None


def _is_compressed(fh: BinaryIO) -> bool:
    head = fh.read(6)
    fh.seek(0)
    return head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head == b"\xfd7zXZ\x00"


_ZIP_READ_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, OSError, ValueError)


def _copy_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path, mode: int) -> None:
    """Copy one member; read failures mean a corrupt archive, write failures a local disk problem."""
    try:
        src = zf.open(info)
    except _ZIP_READ_ERRORS as e:
        raise _corrupt(archive, e) from None
    with src:
        sink = _Sink(out, archive, mode)
        try:
            while True:
                try:
                    buf = src.read(1 << 20)
                except _ZIP_READ_ERRORS as e:
                    raise _corrupt(archive, e) from None
                if not buf:
                    break
                sink.write(buf)
        finally:
            sink.close()


def _zip_link_target(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    if info.file_size > _MAX_LINK_TARGET:
        raise _refuse(archive, info.filename, f"is a symlink with a {info.file_size} B target")
    try:
        raw = zf.read(info)
    except _ZIP_READ_ERRORS as e:
        raise _corrupt(archive, e) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(archive, info.filename, f"is a symlink whose target {raw[:60]!r} is not UTF-8") from None


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (APPNOTE 4.3.16)
_EOCD64_LOCATOR = struct.Struct("<4sLQL")  # ZIP64 end of central directory locator (4.3.15)
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # ZIP64 end of central directory record (4.3.14)
_CDIR_ENTRY = struct.Struct("<4s4B4HL2L5H2L")  # one central directory header (4.3.12), before its 3 variable fields


def _check_zip_directory(archive: Path, f: BinaryIO, limits: Limits) -> None:
    """Count the central directory's entries by walking their headers (constant memory) and refuse past
    `max_members` before zipfile builds one ZipInfo per entry (~10× the directory's size in memory). The
    entry count the end record declares is not trusted: zipfile parses the whole directory whatever it says.
    A file that is not a well-formed zip is left to zipfile, which reports it corrupt. `f`: the archive, open."""
    size = f.seek(0, os.SEEK_END)
    tail = min(size, _EOCD.size + 0xFFFF)  # the record, then a comment of at most 64 KiB
    f.seek(size - tail)
    buf = f.read(tail)
    at = buf.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(buf):
        return
    eocd_pos = size - tail + at
    _, _, _, _, _, cd_size, _, _ = _EOCD.unpack_from(buf, at)
    cd_end = eocd_pos
    if at >= _EOCD64_LOCATOR.size and buf[at - _EOCD64_LOCATOR.size:at].startswith(b"PK\x06\x07"):
        cd_end = eocd_pos - _EOCD64_LOCATOR.size - _EOCD64.size  # the ZIP64 record sits before the locator
        f.seek(max(cd_end, 0))
        rec = f.read(_EOCD64.size)
        if len(rec) == _EOCD64.size and rec.startswith(b"PK\x06\x06"):
            cd_size = _EOCD64.unpack(rec)[8]
    start = cd_end - cd_size  # as zipfile reads it (data prepended to the archive shifts every offset)
    if cd_size <= 0 or start < 0:
        return
    f.seek(start)
    members, pos = 0, start
    while pos + _CDIR_ENTRY.size <= cd_end:
        head = f.read(_CDIR_ENTRY.size)
        if len(head) < _CDIR_ENTRY.size or not head.startswith(b"PK\x01\x02"):
            return
        fields = _CDIR_ENTRY.unpack(head)
        skip = fields[12] + fields[13] + fields[14]  # file name, extra field, comment lengths
        members += 1
        if members > limits.max_members:
            raise DataError(f"{archive}: more than {limits.max_members} members in its zip directory (the "
                            f"limit); refusing to extract — if the archive is genuine, raise "
                            f"FCN_EXTRACT_MAX_MEMBERS and rerun")
        f.seek(skip, os.SEEK_CUR)
        pos += _CDIR_ENTRY.size + skip


def _extract_zip(archive: Path, fh: BinaryIO, tmp: Path, limits: Limits, dest: Path) -> None:
    _check_zip_directory(archive, fh, limits)
    try:
        with zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            plan = _Plan(archive, tmp, limits, sum(max(i.file_size, 0) for i in infos), dest)
            todo: list[tuple[zipfile.ZipInfo, str, int]] = []
            for info in infos:  # check every member before writing any
                mode = info.external_attr >> 16 if info.create_system == 3 else 0
                if stat.S_ISLNK(mode):
                    plan.add(info.filename, "l", target=_zip_link_target(archive, zf, info))
                elif info.is_dir() or stat.S_ISDIR(mode):
                    todo.append((info, plan.add(info.filename, "d"), mode))
                elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                    raise _refuse(archive, info.filename, "is a device/fifo/special file")
                else:
                    todo.append((info, plan.add(info.filename, "f", size=info.file_size), mode))
            for info, rel, mode in todo:
                out = tmp / rel
                if plan.kind.get(rel) == "d":
                    _mkdir(out, archive)
                    continue
                _mkdir(out.parent, archive)
                _copy_member(archive, zf, info, out, 0o755 if mode & 0o111 else 0o644)
            plan.make_links()
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, ValueError, UnicodeError) as e:
        raise _corrupt(archive, e) from None
    except OSError as e:
        raise _corrupt(archive, e) from None


def _open_archive(archive: Path) -> BinaryIO:
    try:
        return open_regular(archive, "archive")
    except FileNotFoundError:
        raise DataError(f"{archive}: archive not found; run the download rule for it first") from None
    except OSError as e:
        raise _corrupt(archive, e) from None


def _extract_into(archive: Path, tmp: Path, limits: Limits, dest: Path) -> None:
    """Open the archive once (refused unless a regular file, on the descriptor: nothing swapped in after the
    checks can block or redirect the read) and extract it from that descriptor."""
    with _open_archive(archive) as fh:
        is_zip = zipfile.is_zipfile(fh)
        fh.seek(0)
        (_extract_zip if is_zip else _extract_tar)(archive, fh, tmp, limits, dest)


def _merge_extract(archive: Path, dest: Path, limits: Limits) -> Path:
    """Extract into the existing folder `dest` like `tar -C dest`, refusing (nothing changed) if any member
    would overwrite something there. The temp tree lives inside `dest` (same file system; `-o .` works
    without write access to the parent)."""
    for d in dest.glob(f".fcn{_TMP_MARK}*"):  # left by a killed merge into this folder
        pid = d.name.rsplit(_TMP_MARK, 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
            shutil.rmtree(d, ignore_errors=True)
    tmp = dest / f".fcn{_TMP_MARK}{os.getpid()}"
    try:
        tmp.mkdir()
    except OSError as e:
        raise DataError(f"{dest}: cannot write in this folder ({e.strerror or e}); fix its permissions or "
                        f"extract elsewhere") from None
    try:
        _extract_into(archive, tmp, limits, dest)
        try:
            merge_into(tmp, dest)
        except FileExistsError as e:
            raise DataError(f"{dest}: {e.args[0]!r} from {archive} already exists there; refusing to extract "
                            f"(nothing was changed) — extract into a new or empty folder, or move "
                            f"{dest / e.args[0]} away and rerun") from None
        except OSError as e:
            raise _user_error(_WriteFailed(dest, archive, e), tmp, dest) from None
    except _WriteFailed as w:
        raise _user_error(w, tmp, dest) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def safe_extract(archive: Path, dest: Path, limits: Limits | None = None, *, merge: bool = False) -> Path:
    """Extract `archive` (.tar, .tar.gz/.tgz, .zip) to `dest` all-or-nothing; returns `dest`.

    An unsafe member, a corrupt archive, a cap exceeded or a full disk raises DataError and leaves `dest`
    untouched. An existing `dest` is replaced only after the new tree is complete (a rule's own output
    folder) — or, with `merge` (a user's folder, `fcn extract`), added to like `tar -C` if no member would
    overwrite anything there, else refused naming the first clash.
    """
    archive, dest = Path(archive), Path(os.path.abspath(dest))  # "-o ." has a name and a parent
    if archive.is_dir():
        raise DataError(f"{archive}: is a folder, not an archive; delete it and rerun the download")
    _open_archive(archive).close()  # refuse a missing or non-regular archive before any folder is made
    limits = limits or Limits()
    if merge and dest.is_dir():
        return _merge_extract(archive, dest, limits)
    if merge and (dest.exists() or dest.is_symlink()):
        raise DataError(f"{dest}: exists and is not a folder; pass a folder to extract into")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(dest)
    tmp = dest.parent / f".{dest.name}{_TMP_MARK}{os.getpid()}"
    tmp.mkdir()
    try:
        try:
            _extract_into(archive, tmp, limits, dest)
        except _WriteFailed as w:
            raise _user_error(w, tmp, dest) from None
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
