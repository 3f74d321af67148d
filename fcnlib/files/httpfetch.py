"""One URL → the complete, verified part file of a download: http(s)/file opening, Range resume and its
cross-checks, and the bounds on hostile servers (size, deadline, rate, redirects). fcnlib.files.download holds
the policy around it (existing file, cache dirs, mirrors in order, which checksums, the atomic rename).

Every transport failure — refused or reset connections, TLS errors, an answer that is not HTTP, header
lines too many or too long, a Content-Length that is not plain ASCII digits, a chunked body cut short —
is a `MirrorFailed` (the next mirror is tried), never a raw exception. The deadline is enforced by a
watchdog (`Clock`) that shuts down every socket of the download when it passes, so a server trickling
its headers or body a byte at a time (each read within the socket timeout) cannot outlast it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fcnlib.errors import DownloadError
from fcnlib.files.envcaps import env_float, env_int
from fcnlib.progress import progress as progress_bar

CHUNK = 1 << 20
OVERLAP = 64 << 10  # bytes re-fetched before a resume point of an unverifiable source, and compared
USER_AGENT = "fcnlib-download/0.1 (+https://github.com/; FCN reproduction)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.ASCII)
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}", re.ASCII)
#: What a broken or hostile server can make the standard library raise while we talk to it.
_TRANSPORT_ERRORS = (OSError, ValueError, http.client.HTTPException)
_FREE_MARGIN = 4 << 20


@dataclass(frozen=True)
class Bounds:
    """How long and how big one download may get (environment variables raise them without code)."""

    deadline: float = field(default_factory=lambda: env_float("FCN_DOWNLOAD_DEADLINE", 12 * 3600.0, "seconds"))
    min_rate: float = field(default_factory=lambda: env_float("FCN_DOWNLOAD_MIN_RATE", 1024.0, "B/s"))
    rate_window: float = field(default_factory=lambda: env_float("FCN_DOWNLOAD_RATE_WINDOW", 120.0, "seconds"))
    max_bytes: int = field(default_factory=lambda: env_int("FCN_DOWNLOAD_MAX_BYTES", 64 << 30, "bytes"))


class MirrorFailed(Exception):
    """One URL failed for a reason worth reporting. Transient failures (a dropped connection) are retried
    on the same URL, resuming from the part file; the others move on to the next mirror."""

    def __init__(self, msg: str, transient: bool = False) -> None:
        super().__init__(msg)
        self.transient = transient


class DeadlineReached(Exception):
    """The overall deadline passed: no mirror is tried any more."""


class _Restart(Exception):
    """The server's answer to a Range request does not fit the part file: start this URL from zero."""


def part_path(dest: Path) -> Path:
    """Where the partial download of `dest` is kept between runs."""
    return dest.with_name(dest.name + ".part")


def part_meta_path(dest: Path) -> Path:
    """What the server said when the part was started (URL, total, ETag, Last-Modified), for resuming."""
    return dest.with_name(dest.name + ".part.json")


def _hashers(sums: dict[str, str]) -> dict[str, hashlib._Hash]:
    """One digest per expected checksum (md5/sha1 as published for old archives, not for security)."""
    return {("sha256" if name == "sha256_prefix" else name): hashlib.new(
        "sha256" if name == "sha256_prefix" else name, usedforsecurity=False) for name in sums}


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


def check_file(path: Path, size: int | None, sums: dict[str, str],
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
        if name == "sha256_prefix":
            got = hashers["sha256"].hexdigest()
            if not got.startswith(want.lower()):
                return f"sha256 {got} does not start with {want} (the prefix in the file name)"
            continue
        got = hashers[name].hexdigest()
        if got.lower() != want.lower():
            return f"{name} {got}, expected {want}"
    return None


class _CheckedRedirect(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to http/https (urllib alone would follow ftp://, which is unchecked)."""

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001, ANN201 - urllib's API
        loc = headers.get("Location") or headers.get("URI") or ""
        newurl = urllib.parse.urljoin(req.full_url, loc)
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            fp.close()
            raise MirrorFailed(f"redirected to {newurl!r}: scheme {scheme!r} refused (a redirect may only "
                                f"go to http or https)")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _resolve(host: str, port: int, clock: Clock) -> list[tuple]:
    """getaddrinfo within the deadline: it cannot be interrupted, so it runs in a daemon thread that is
    abandoned (left to finish on its own) when the deadline passes first."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError as e:
            box["error"] = e

    t = threading.Thread(target=run, name="fcn-resolve", daemon=True)
    t.start()
    t.join(max(0.0, clock.left()))
    if t.is_alive():
        raise TimeoutError(f"resolving {host} did not finish before the deadline")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["infos"]  # type: ignore[return-value]


class _WatchedHTTP(http.client.HTTPConnection):
    """An HTTP connection inside the download's deadline: the name lookup is bounded by it, and the
    watchdog can shut its sockets down when it passes."""

    def __init__(self, *args, clock: Clock, **kwargs) -> None:  # noqa: ANN002, ANN003 - http.client's API
        super().__init__(*args, **kwargs)
        self._clock = clock
        create = self._create_connection

        def connect_watched(address: tuple[str, int], *a: object, **k: object) -> socket.socket:
            host, port = address[0], address[1]
            last: OSError | None = None
            for *_, sockaddr in _resolve(host, port, clock):
                try:  # a numeric address: no second lookup
                    return clock.watch(create((sockaddr[0], sockaddr[1]), *a, **k))  # covers a TLS handshake too
                except OSError as e:
                    last = e
            raise last or OSError(f"no address for {host}")

        self._create_connection = connect_watched

    def connect(self) -> None:
        super().connect()
        self._clock.watch(self.sock)  # for https: the TLS socket that replaced the raw one


class _WatchedHTTPS(_WatchedHTTP, http.client.HTTPSConnection):
    pass


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_WatchedHTTP, clock=self.clock), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        kwargs = {"context": self._context}
        if getattr(self, "_check_hostname", None) is not None:  # Python < 3.12 only
            kwargs["check_hostname"] = self._check_hostname
        return self.do_open(functools.partial(_WatchedHTTPS, clock=self.clock), req, **kwargs)


def _opener(clock: Clock) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_CheckedRedirect, _WatchedHTTPHandler(clock), _WatchedHTTPSHandler(clock))


def _short(e: BaseException) -> str:
    """An exception as a short phrase (a hostile status line or header can be 64 KiB long)."""
    s = f"{type(e).__name__}: {e}" if isinstance(e, http.client.HTTPException) else str(e)
    return s if len(s) <= 200 else s[:200] + "…"


@dataclass
class _Answer:
    stream: IO[bytes]
    start: int  # offset actually served
    total: int | None  # whole file size as the server reports it
    length: int | None  # bytes this answer promises (Content-Length)
    validators: dict[str, str]


def _open_url(url: str, offset: int, timeout: float, clock: Clock, if_range: str | None = None) -> _Answer:
    """Open `url` at byte `offset`. A 206 whose Content-Range does not start at `offset` raises _Restart."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as e:
            raise MirrorFailed(f"cannot open {path}: {e.strerror}") from None
        st = os.fstat(f.fileno())
        start = min(offset, st.st_size)
        f.seek(start)
        return _Answer(f, start, st.st_size, st.st_size - start, {"mtime": str(st.st_mtime_ns)})
    if scheme not in ("http", "https"):
        raise MirrorFailed(f"unsupported URL scheme {scheme!r} (use http, https or file)")
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset > 0:
        req.add_header("Range", f"bytes={offset}-")
        if if_range:
            req.add_header("If-Range", if_range)
    try:
        resp = _opener(clock).open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset > 0:
            # Range past the end: the part file is already complete (or longer than the file).
            m = re.fullmatch(r"bytes\s+\*/([0-9]{1,19})", e.headers.get("Content-Range", "") if e.headers else "")
            e.close()
            return _Answer(_EmptyStream(), offset, int(m.group(1)) if m else None, 0, {})
        e.close()
        raise MirrorFailed(f"HTTP {e.code} {_short(Exception(e.reason))}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, MirrorFailed):
            raise e.reason from None
        raise MirrorFailed(f"cannot connect: {_short(Exception(e.reason))}") from None
    except http.client.HTTPException as e:
        raise MirrorFailed(f"not a valid HTTP answer ({_short(e)})") from None
    except _TRANSPORT_ERRORS as e:
        raise MirrorFailed(f"cannot connect: {_short(e)}") from None
    validators = {k: v for k in ("ETag", "Last-Modified") if (v := resp.headers.get(k))}
    cl = resp.headers.get("Content-Length")
    if cl is not None and not _CONTENT_LENGTH.fullmatch(cl.strip()):
        resp.close()
        raise MirrorFailed(f"not a valid HTTP answer (Content-Length {cl[:40]!r} is not a byte count)")
    length = int(cl) if cl is not None else None
    if resp.status == 206:
        m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if not m or int(m.group(1)) != offset or (m.group(3) != "*" and int(m.group(2)) >= int(m.group(3))):
            got = resp.headers.get("Content-Range")
            resp.close()
            raise _Restart(f"server answered Range {offset}- with Content-Range {got!r}")
        total = int(m.group(3)) if m.group(3) != "*" else None
        span = int(m.group(2)) - int(m.group(1)) + 1
        if length is not None and length != span:
            resp.close()
            raise _Restart(f"Content-Range {resp.headers.get('Content-Range')!r} and Content-Length {length} "
                           f"disagree")
        return _Answer(resp, offset, total, span, validators)
    # 200: the server ignored Range (or none was sent) and sends the whole file from byte 0.
    return _Answer(resp, 0, length, length, validators)


class _EmptyStream:
    def read1(self, n: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def _load_meta(dest: Path) -> dict:
    try:
        return json.loads(part_meta_path(dest).read_text())
    except (OSError, ValueError):
        return {}


def _save_meta(dest: Path, meta: dict) -> None:
    p = part_meta_path(dest)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, sort_keys=True))
    os.replace(tmp, p)


def _drop_part(dest: Path) -> None:
    for p in (part_path(dest), part_meta_path(dest)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


@dataclass
class Clock:
    """The download's one deadline, and its watchdog: once `t_end` passes, every socket registered with
    `watch` is shut down, so a read blocked on a trickling server returns at once."""

    bounds: Bounds
    t_end: float
    expired: bool = False
    _socks: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _timer: threading.Timer | None = None

    def left(self) -> float:
        return self.t_end - time.monotonic()

    def __enter__(self) -> Clock:
        self._timer = threading.Timer(max(0.0, self.left()), self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._socks.clear()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._socks = [s for s in self._socks if s.fileno() != -1]
            self._socks.append(sock)
            if self.expired:
                _shutdown(sock)
        return sock

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for s in self._socks:
                _shutdown(s)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def fetch(url: str, dest: Path, size: int | None, sums: dict[str, str], timeout: float, progress: bool,
          clock: Clock) -> None:
    """Bring the part file to the complete, verified file from one URL (resuming), or raise MirrorFailed."""
    part = part_path(dest)
    verifiable = bool(sums)
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        _drop_part(dest)
        offset = 0
    meta = _load_meta(dest) if offset else {}
    if offset and not verifiable and (meta.get("url") != url or meta.get("total") is None
                                      or offset <= OVERLAP):
        # No checksum can catch a spliced resume of this source: resume only what we can cross-check.
        _drop_part(dest)
        offset = 0
    for attempt in range(3):
        ask = offset if verifiable or offset == 0 else offset - OVERLAP
        if_range = (meta.get("validators") or {}).get("ETag") or (meta.get("validators") or {}).get("Last-Modified")
        try:
            ans = _open_url(url, ask, max(0.5, min(timeout, clock.left())), clock, if_range if ask else None)
        except _Restart:
            _drop_part(dest)
            offset, meta = 0, {}
            continue
        try:
            expect = size if size is not None else ans.total
            if size is not None and ans.total is not None and ans.total != size:
                if ans.start > 0:
                    raise _Restart()
                raise MirrorFailed(f"server reports {ans.total} B, expected {size} B")
            if ans.start > 0 and not verifiable and (ans.total != meta.get("total") or any(
                    meta.get("validators", {}).get(k) not in (None, v) for k, v in ans.validators.items())):
                raise _Restart()
            if ans.start == 0:
                meta = {"url": url, "total": ans.total, "validators": ans.validators}
                _save_meta(dest, meta)
            _stream_into(ans, part, dest, expect, sums, progress, clock, verify_overlap=not verifiable)
        except _Restart:
            ans.stream.close()
            _drop_part(dest)
            offset, meta = 0, {}
            continue
        finally:
            ans.stream.close()
        got = part.stat().st_size
        if expect is not None and got < expect:
            raise MirrorFailed(f"connection closed after {got} of {expect} B; the partial file {part} is "
                                f"kept for resuming", transient=True)
        reason = check_file(part, size, sums)
        if reason is None:
            return
        _drop_part(dest)
        if ans.start > 0 and attempt == 0:
            # The kept prefix may have come from another mirror or an older file: retry once from 0.
            offset, meta = 0, {}
            continue
        raise MirrorFailed(f"checksum mismatch: {reason}; the bad file was deleted")
    raise MirrorFailed("the server's answers to Range requests never matched; the part file was deleted")


def _stream_into(ans: _Answer, part: Path, dest: Path, expect: int | None, sums: dict[str, str],
                 progress: bool, clock: Clock, verify_overlap: bool) -> None:
    """Append the answer's body to the part file at its start offset, within every bound."""
    b = clock.bounds
    limit = expect if expect is not None else b.max_bytes
    announced = ans.start + ans.length if ans.length is not None else None
    if announced is not None and announced < limit:
        limit = announced  # a body longer than its own Content-Length / Content-Range is a lie
    start = ans.start
    keep = part.stat().st_size if part.exists() else 0
    overlap = keep - start if (start > 0 and verify_overlap) else 0
    tail = b""
    if overlap > 0:
        with open(part, "rb") as f:
            f.seek(start)
            tail = f.read(overlap)
    free = shutil.disk_usage(part.parent).free
    if expect is not None and expect - keep + _FREE_MARGIN > free:  # local: no mirror would help
        raise DownloadError(f"{dest}: not enough free disk space on {part.parent} for {expect - keep} more B "
                            f"({free} B free); free disk space and rerun")
    # Written only under the destination's lock (fcnlib.files.download); never through a link planted in its place.
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    with os.fdopen(fd, "r+b") as out, progress_bar(
        total=expect, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
        disable=not progress, leave=False,
    ) as bar:
        out.truncate(start + len(tail) if start > 0 else 0)
        out.seek(start + len(tail) if start > 0 else 0)
        pos = start
        win_t, win_n = time.monotonic(), 0
        checked_free = pos
        while True:
            try:
                # read1: return what has arrived instead of blocking for a full chunk, so the
                # part file (and the progress bar) follows the network closely.
                buf = ans.stream.read1(CHUNK)
            except _TRANSPORT_ERRORS as e:
                raise MirrorFailed(f"connection lost after {out.tell()} B ({_short(e)}); "
                                    f"the partial file {part} is kept for resuming", transient=True) from None
            now = time.monotonic()
            if not buf:
                if clock.expired:  # the watchdog ended this body, not the server
                    raise DeadlineReached()
                break
            if tail:
                n = min(len(tail), len(buf))
                if buf[:n] != tail[:n]:
                    raise _Restart()  # the server serves other bytes than the kept part: splice refused
                tail, buf, pos = tail[n:], buf[n:], pos + n
                if not buf:
                    continue
            if pos + len(buf) > limit:
                out.close()
                _drop_part(dest)
                what = ("what the server announced" if limit == announced else "the declared size"
                        if expect is not None else "FCN_DOWNLOAD_MAX_BYTES")
                raise MirrorFailed(f"the server sent more than {limit} B ({what}); the part file was deleted")
            out.write(buf)
            pos += len(buf)
            win_n += len(buf)
            bar.update(len(buf))
            if pos - checked_free > (16 << 20):
                checked_free = pos
                if shutil.disk_usage(part.parent).free < _FREE_MARGIN:
                    raise DownloadError(f"{dest}: the disk holding {part} is almost full; free disk space and "
                                        f"rerun (the partial file is kept for resuming)")
            if clock.left() <= 0:
                raise DeadlineReached()
            if now - win_t >= b.rate_window:
                rate = win_n / (now - win_t)
                if rate < b.min_rate:
                    raise MirrorFailed(f"too slow: {rate:.0f} B/s over {b.rate_window:.0f} s, below "
                                        f"FCN_DOWNLOAD_MIN_RATE={b.min_rate:.0f} B/s; the partial file is kept "
                                        f"for resuming")
                win_t, win_n = now, 0
        if tail:
            raise _Restart()
        out.flush()
        os.fsync(out.fileno())
