"""One download function for every rule: mirrors, cache dirs, resume, checksums, atomic rename.

The partial file lives at `<dest>.part` (not a declared output), so a killed job leaves `dest` absent and
the next run resumes with an HTTP Range request (or a seek, for file:// URLs). `dest` only ever appears by
`os.replace` after the size and checksums have been verified, so a file at `dest` is always a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from .errors import DownloadError
from .progress import progress as progress_bar

CHUNK = 1 << 20
USER_AGENT = "fcnlib-download/0.1 (+https://github.com/; FCN reproduction)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class _MirrorFailed(Exception):
    """One URL failed for a reason worth reporting. Transient failures (a dropped connection) are retried
    on the same URL, resuming from the part file; the others move on to the next mirror."""

    def __init__(self, msg: str, transient: bool = False) -> None:
        super().__init__(msg)
        self.transient = transient


def part_path(dest: Path) -> Path:
    """Where the partial download of `dest` is kept between runs."""
    return dest.with_name(dest.name + ".part")


def _hashers(sums: dict[str, str]) -> dict[str, hashlib._Hash]:
    """One digest per expected checksum (md5/sha1 as published for old archives, not for security)."""
    return {name: hashlib.new(name, usedforsecurity=False) for name in sums}


def _feed_file(path: Path, hashers: dict[str, hashlib._Hash], limit: int | None = None) -> int:
    """Hash the first `limit` bytes (all if None) of `path`; returns the number of bytes read."""
    n = 0
    with open(path, "rb") as f:
        while True:
            want = CHUNK if limit is None else min(CHUNK, limit - n)
            if want <= 0:
                break
            buf = f.read(want)
            if not buf:
                break
            for h in hashers.values():
                h.update(buf)
            n += len(buf)
    return n


def _check(path: Path, size: int | None, sums: dict[str, str],
           hashers: dict[str, hashlib._Hash] | None = None) -> str | None:
    """None when `path` matches; else the reason. `hashers` may hold digests already fed with the file."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size {actual} B, expected {size} B"
    if hashers is None:
        hashers = _hashers(sums)
        if hashers:
            _feed_file(path, hashers)
    for name, want in sums.items():
        got = hashers[name].hexdigest()
        if got.lower() != want.lower():
            return f"{name} {got}, expected {want}"
    return None


def _place(src: Path, dest: Path) -> None:
    """Put a verified file at dest atomically: hardlink if possible (no copy of 2 GB), else copy."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _open_url(url: str, offset: int, timeout: float) -> tuple[IO[bytes], int, int | None]:
    """Open `url` at byte `offset`. Returns (stream, start offset actually served, total size or None)."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as e:
            raise _MirrorFailed(f"cannot open {path}: {e.strerror}") from None
        total = os.fstat(f.fileno()).st_size
        start = min(offset, total)
        f.seek(start)
        return f, start, total
    if scheme not in ("http", "https"):
        raise _MirrorFailed(f"unsupported URL scheme {scheme!r} (use http, https or file)")
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset > 0:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - scheme checked above
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset > 0:
            # Range past the end: the part file is already complete (or longer than the file).
            e.close()
            return _EmptyStream(), offset, None
        e.close()
        raise _MirrorFailed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _MirrorFailed(f"cannot connect: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise _MirrorFailed(f"cannot connect: {e}") from None
    length = resp.headers.get("Content-Length")
    if resp.status == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            resp.close()
            raise _MirrorFailed(f"server answered Range {offset}- with Content-Range "
                                f"{resp.headers.get('Content-Range')!r}")
        total = int(m.group(3)) if m.group(3) != "*" else None
        return resp, offset, total
    # 200: the server ignored Range (or none was sent) and sends the whole file from byte 0.
    return resp, 0, int(length) if length is not None else None


class _EmptyStream:
    def read1(self, n: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def _fetch(url: str, part: Path, size: int | None, sums: dict[str, str], timeout: float, progress: bool,
           label: str) -> None:
    """Bring `part` to the complete, verified file from one URL (resuming), or raise _MirrorFailed."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    for attempt in range(2):
        stream, start, total = _open_url(url, offset, timeout)
        try:
            if size is not None and total is not None and total != size:
                raise _MirrorFailed(f"server reports {total} B, expected {size} B")
            hashers = _hashers(sums)
            mode = "ab" if start > 0 else "wb"
            if start > 0:
                _feed_file(part, hashers, limit=start)
            with open(part, mode) as out, progress_bar(
                total=total if total is not None else size, initial=start, unit="B", unit_scale=True,
                unit_divisor=1024, desc=label, disable=not progress, leave=False,
            ) as bar:
                if start > 0:
                    out.truncate(start)
                    out.seek(start)
                while True:
                    try:
                        # read1: return what has arrived instead of blocking for a full chunk, so the
                        # part file (and the progress bar) follows the network closely.
                        buf = stream.read1(CHUNK)
                    except (OSError, ValueError) as e:
                        raise _MirrorFailed(f"connection lost after {out.tell()} B ({e}); "
                                            f"the partial file {part} is kept for resuming",
                                            transient=True) from None
                    if not buf:
                        break
                    out.write(buf)
                    for h in hashers.values():
                        h.update(buf)
                    bar.update(len(buf))
                out.flush()
                os.fsync(out.fileno())
        finally:
            stream.close()
        if total is not None and part.stat().st_size < total:
            raise _MirrorFailed(f"connection closed after {part.stat().st_size} of {total} B; "
                                f"the partial file {part} is kept for resuming", transient=True)
        reason = _check(part, size, sums, hashers)
        if reason is None:
            return
        part.unlink()
        if start > 0 and attempt == 0:
            # The kept prefix may have come from another mirror or an older file: retry once from 0.
            offset = 0
            continue
        raise _MirrorFailed(f"checksum mismatch: {reason}; the bad file was deleted")
    raise AssertionError("unreachable")


def download(urls: Sequence[str], dest: Path, *, size: int | None = None, md5: str | None = None,
             sha256: str | None = None, sha1: str | None = None, cache_dirs: Sequence[Path] = (), progress: bool = True,
             timeout: float = 60.0, retries: int = 3) -> Path:
    """Fetch `dest` from the first working source: `dest` itself, cache dirs, then each URL in order.

    Every candidate is verified against `size` and every checksum given (md5, sha1, sha256) before it
    is renamed to `dest`.
    A dropped connection is retried `retries` times per URL, resuming from the kept part file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sums = {k: v for k, v in (("md5", md5), ("sha1", sha1), ("sha256", sha256)) if v}
    tried: list[str] = []
    if dest.exists():
        reason = _check(dest, size, sums)
        if reason is None:
            return dest
        tried.append(f"existing {dest} ({reason}; replaced)")
        dest.unlink()

    for d in cache_dirs:
        cand = Path(d) / dest.name
        if not cand.is_file():
            tried.append(f"cache {cand} (not present)")
            continue
        reason = _check(cand, size, sums)
        if reason is not None:
            tried.append(f"cache {cand} ({reason}; left untouched)")
            continue
        _place(cand, dest)
        return dest

    part = part_path(dest)
    for url in urls:
        reason = "not tried"
        for _ in range(max(1, retries)):
            try:
                _fetch(url, part, size, sums, timeout, progress, dest.name)
            except _MirrorFailed as e:
                reason = str(e)
                if e.transient:
                    continue  # transient: resume from the same mirror
                break
            except OSError as e:  # local disk trouble: no mirror will fix it
                raise DownloadError(f"{dest}: cannot write the download ({e}); free disk space or fix "
                                    f"permissions on {dest.parent} and rerun") from None
            os.replace(part, dest)
            return dest
        tried.append(f"{url} ({reason})")

    checks = ", ".join(f"{k} {v}" for k, v in ({"size": size} | sums).items() if v)
    where = " or ".join([str(dest)] + [str(Path(d) / dest.name) for d in cache_dirs])
    raise DownloadError(
        f"could not download {dest.name}: tried " + "; ".join(tried or ["no URL given"])
        + f". Fetch it by hand and put it at {where}" + (f" ({checks})" if checks else "")
        + ", then rerun.")


def cli(argv: Sequence[str] | None = None) -> int:
    """`fcn download URL... -o DEST [--md5 X] [--sha256 X] [--size N] [--cache-dir D]...`"""
    from .cliopts import Parser, add_out, add_progress

    p = Parser(prog="fcn download", description="Download one file with mirrors, resume "
               "and checksum verification; URLs are tried in order.")
    p.add_argument("urls", nargs="+", metavar="URL", help="mirrors of the file, tried in order (http(s), file)")
    add_out(p, "destination file", required=True, type=Path)
    p.add_argument("--md5", help="expected MD5 (hex); a mismatch rejects the mirror")
    p.add_argument("--sha256", help="expected SHA-256 (hex)")
    p.add_argument("--sha1", help="expected SHA-1 (hex)")
    p.add_argument("--size", type=int, help="expected size in bytes")
    p.add_argument("--cache-dir", action="append", type=Path, default=[],
                   help="folder where a hand-downloaded copy may be found (repeatable)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds without data before a mirror fails (default 60)")
    add_progress(p)
    a = p.parse_args(argv)
    path = download(a.urls, a.out, size=a.size, md5=a.md5, sha256=a.sha256, sha1=a.sha1, cache_dirs=a.cache_dir,
                    progress=not a.no_progress, timeout=a.timeout)
    print(path)
    return 0


if __name__ == "__main__":  # `python -m fcnlib.download ...`, same exit codes as `fcn download`
    from .errors import FcnError

    try:
        sys.exit(cli())
    except FcnError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
