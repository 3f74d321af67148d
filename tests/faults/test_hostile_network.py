"""Ordinary network failures must not defeat the mirrors (issue 23, class 4): every way a server can break
the transport — an answer that is not HTTP, a malformed status or header, too many or too long header lines,
a Content-Length that is not ASCII digits, a chunked body cut or malformed, a reset, TLS to a plain server,
a redirect to an invalid URL — is a failed mirror: the next one is tried, and with no other mirror the
download ends in one DownloadError naming the file. One deadline (FCN_DOWNLOAD_DEADLINE) covers connect,
headers and body: a server trickling its status line or headers cannot outlast it.

Servers are loopback only and stop by themselves (tests/helpers_http.py: serve, raw_server). Fast."""

from __future__ import annotations

import hashlib
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile import fcn, one_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_http import raw_server, serve  # noqa: E402

from fcnlib.errors import DownloadError  # noqa: E402
from fcnlib.files.download import Bounds, download, part_path  # noqa: E402

BODY = random.Random(3).randbytes(200_000)
SHA = hashlib.sha256(BODY).hexdigest()
Respond = Callable[[socket.socket, threading.Event], None]


def _send(data: bytes) -> Respond:
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(data)
    return respond


def _head(*lines: str | bytes, body: bytes = b"") -> Respond:
    raw = b"".join((ln.encode("utf-8") if isinstance(ln, str) else ln) + b"\r\n" for ln in lines) + b"\r\n"
    return _send(raw + body)


def _reset(conn: socket.socket, stop: threading.Event) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close → RST


def _silent_close(conn: socket.socket, stop: threading.Event) -> None:
    pass


def _chunked(first: bytes) -> Respond:
    return _head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", "Connection: close", body=first)


BROKEN: dict[str, tuple[Respond, str]] = {
    # name: (what the server does, the scheme of the URL the client uses)
    "ssh banner instead of HTTP": (_send(b"SSH-2.0-OpenSSH_9.6\r\n"), "http"),
    "SMTP greeting": (_send(b"220 mail.example ESMTP ready\r\n"), "http"),
    "connection closed without an answer": (_silent_close, "http"),
    "connection reset": (_reset, "http"),
    "status code not a number": (_head("HTTP/1.1 2OO OK"), "http"),
    "unknown protocol version": (_head("HTTP/3.0 200 OK", "Content-Length: 3", body=b"abc"), "http"),
    "status line of 70 KB": (_head("HTTP/1.1 200 " + "O" * 70_000), "http"),
    "150 header lines": (_head("HTTP/1.1 200 OK", *[f"X-H{i}: v" for i in range(150)]), "http"),
    "header line of 70 KB": (_head("HTTP/1.1 200 OK", "X-Long: " + "a" * 70_000), "http"),
    "fullwidth digits in Content-Length": (_head("HTTP/1.1 200 OK", "Content-Length: ２００", body=b"x" * 200), "http"),
    "superscript digit in Content-Length": (_head("HTTP/1.1 200 OK", "Content-Length: ²", body=b"xx"), "http"),
    "Arabic-Indic digits in Content-Length": (_head("HTTP/1.1 200 OK", "Content-Length: ١٢", body=b"x" * 12), "http"),
    "negative Content-Length": (_head("HTTP/1.1 200 OK", "Content-Length: -5", body=b"x" * 5), "http"),
    "Content-Length with a sign": (_head("HTTP/1.1 200 OK", f"Content-Length: +{len(BODY)}", body=BODY), "http"),
    "Content-Length not a number": (_head("HTTP/1.1 200 OK", "Content-Length: lots", body=b"x"), "http"),
    "chunked body dropped mid-chunk": (_chunked(b"30d40\r\n" + BODY[:1000]), "http"),
    "chunk size not hex": (_chunked(b"zz\r\n" + BODY[:10]), "http"),
    "chunk size line of 70 KB": (_chunked(b"1" * 70_000 + b"\r\n"), "http"),
    "chunked body without its last chunk": (_chunked(b"10\r\n" + BODY[:16] + b"\r\n"), "http"),
    "redirect to port 99999": (_head("HTTP/1.1 302 Found", "Location: http://127.0.0.1:99999/x",
                                     "Content-Length: 0"), "http"),
    "redirect to a malformed IPv6 host": (_head("HTTP/1.1 302 Found", "Location: http://[::1/x",
                                                "Content-Length: 0"), "http"),
    "redirect to a port that is not a number": (_head("HTTP/1.1 302 Found", "Location: http://127.0.0.1:x1/f",
                                                      "Content-Length: 0"), "http"),
    "TLS spoken to a plain-HTTP server": (_head("HTTP/1.1 400 Bad Request", "Content-Length: 0"), "https"),
}


def _url(base: str, scheme: str) -> str:
    return base.replace("http://", f"{scheme}://", 1) + "/f.bin"


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_mirror_moves_on_to_the_next(tmp_path: Path, name: str) -> None:
    respond, scheme = BROKEN[name]
    dest = tmp_path / "f.bin"
    with raw_server(respond) as base, serve() as good:
        url = good.add("/f.bin", BODY)
        out = download([_url(base, scheme), url], dest, sha256=SHA, progress=False, retries=2, timeout=10)
        assert [h.path for h in good.hits] == ["/f.bin"]
    assert out.read_bytes() == BODY


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_only_mirror_is_one_download_error(tmp_path: Path, name: str) -> None:
    respond, scheme = BROKEN[name]
    dest = tmp_path / "f.bin"
    with raw_server(respond) as base, pytest.raises(DownloadError) as ei:
        download([_url(base, scheme)], dest, sha256=SHA, progress=False, retries=2, timeout=10)
    msg = str(ei.value)
    assert "could not download f.bin" in msg and _url(base, scheme) in msg and len(msg) < 2000, msg
    assert not dest.exists()


@pytest.mark.parametrize("name", ["ssh banner instead of HTTP", "150 header lines",
                                  "superscript digit in Content-Length", "chunked body dropped mid-chunk"])
def test_cli_broken_mirror_one_error_line(tmp_path: Path, name: str) -> None:
    respond, scheme = BROKEN[name]
    with raw_server(respond) as base:
        r = fcn("download", _url(base, scheme), "-o", str(tmp_path / "f.bin"), "--sha256", SHA, "--no-progress")
    err = one_error(r)
    assert "f.bin" in err, err


def _trickle(prefix: bytes, unit: bytes, delay: float = 0.1) -> Respond:
    """Send `prefix`, then `unit` byte by byte forever (until stopped): each read well within the timeout."""
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(prefix)
        while not stop.is_set():
            for b in unit:
                conn.sendall(bytes([b]))
                if stop.wait(delay):
                    return
    return respond


def _never_answers(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(30)


TRICKLES: dict[str, Respond] = {
    "status line a byte at a time": _trickle(b"", b"HTTP/1.1 200 OK"),
    "header lines a byte at a time": _trickle(b"HTTP/1.1 200 OK\r\n", b"X-Slow: 1\r\n"),
    "one endless header line": _trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a"),
    "chunk-size lines a byte at a time": _trickle(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                                  b"1\r\nx\r\n"),
    "accepts and never answers": _never_answers,
}


@pytest.mark.parametrize("name", list(TRICKLES))
def test_one_deadline_covers_headers_and_body(tmp_path: Path, name: str) -> None:
    """A 60 s socket timeout is never reached: the 1.5 s deadline cuts the trickle and no mirror after it
    is tried (the deadline is for the whole download)."""
    dest = tmp_path / "f.bin"
    with raw_server(TRICKLES[name]) as base, serve() as good:
        url = good.add("/f.bin", BODY)
        t = time.monotonic()
        with pytest.raises(DownloadError) as ei:
            download([base + "/f.bin", url], dest, sha256=SHA, progress=False, timeout=60,
                     bounds=Bounds(deadline=1.5, min_rate=1))
        assert time.monotonic() - t < 15  # not the 60 s timeout, nor a trickle without end
        assert good.hits == []
    msg = str(ei.value)
    assert msg.startswith(f"{dest}: ") and "deadline" in msg and "FCN_DOWNLOAD_DEADLINE" in msg, msg
    assert not dest.exists()


def test_deadline_through_the_cli(tmp_path: Path) -> None:
    with raw_server(TRICKLES["header lines a byte at a time"]) as base:
        r = fcn("download", base + "/f.bin", "-o", str(tmp_path / "f.bin"), "--no-progress",
                env={"FCN_DOWNLOAD_DEADLINE": "1.5"})
    assert "FCN_DOWNLOAD_DEADLINE" in one_error(r)


def test_dropped_chunked_body_resumes_from_the_part(tmp_path: Path) -> None:
    """A chunked answer cut after some bytes keeps them; the retry asks the next mirror only for the rest."""
    dest = tmp_path / "f.bin"
    with raw_server(_chunked(f"{len(BODY):x}\r\n".encode() + BODY[:50_000])) as base, serve() as good:
        url = good.add("/f.bin", BODY)
        with pytest.raises(DownloadError):
            download([base + "/f.bin"], dest, sha256=SHA, progress=False, retries=1)
        assert part_path(dest).stat().st_size == 50_000
        download([url], dest, sha256=SHA, progress=False)
        assert good.hits[0].range == "bytes=50000-"
    assert dest.read_bytes() == BODY


def test_deadline_covers_a_name_lookup_that_hangs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo cannot be interrupted; a resolver that hangs (a dead DNS server) still ends at the
    deadline, with the deadline's message."""
    import socket as socket_mod

    real = socket_mod.getaddrinfo
    release = threading.Event()

    def slow(host: str, *a: object, **k: object) -> list:
        if host == "mirror.invalid":
            release.wait(30)
            raise socket_mod.gaierror("no such host")
        return real(host, *a, **k)

    monkeypatch.setattr(socket_mod, "getaddrinfo", slow)
    dest = tmp_path / "f.bin"
    t = time.monotonic()
    try:
        with pytest.raises(DownloadError) as ei:
            download(["http://mirror.invalid/f.bin"], dest, progress=False, timeout=60,
                     bounds=Bounds(deadline=1.0, min_rate=1))
        assert time.monotonic() - t < 15
    finally:
        release.set()
    assert "deadline" in str(ei.value) and "FCN_DOWNLOAD_DEADLINE" in str(ei.value)


def test_ipv6_loopback_mirror_works(tmp_path: Path) -> None:
    """Addresses come from our own lookup now: an IPv6 literal still connects (where ::1 exists)."""
    try:
        s = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = s.getsockname()[1]

    def serve_once() -> None:
        conn, _ = s.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(BODY) + BODY)

    th = threading.Thread(target=serve_once, daemon=True)
    th.start()
    try:
        out = download([f"http://[::1]:{port}/f.bin"], tmp_path / "f.bin", sha256=SHA, progress=False, retries=1)
    finally:
        s.close()
    assert out.read_bytes() == BODY
