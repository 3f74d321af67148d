"""A loopback HTTP server (one thread) whose routes can misbehave the ways real mirrors do.

Each route serves a byte string and can: ignore Range, serve a corrupted body, answer an error status,
drop the connection after N bytes on its first request, or trickle slowly. Every request is logged with
the Range header it carried and the number of body bytes sent, so tests can prove a resume fetched less.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Route:
    body: bytes
    range: bool = True            # honour "Range: bytes=N-" with 206
    corrupt: bool = False         # flip one byte in the middle of what is served
    status: int = 200             # e.g. 404 / 500 for a dead mirror
    cut_first: int | None = None  # first request: close the connection after this many body bytes
    delay: float = 0.0            # seconds to sleep per chunk (slow server)
    chunk: int = 64 * 1024
    redirect: str | None = None   # answer 302 to this Location instead of a body
    no_length: bool = False       # send no Content-Length (the body ends when the connection closes)
    endless: bool = False         # repeat the body forever (with no_length: a body without end)
    splice: bytes | None = None   # a Range request is served from these bytes instead (a spliced resume)
    content_range: str | None = None  # send this Content-Range on a 206 instead of the true one


@dataclass
class Hit:
    path: str
    range: str | None
    status: int
    sent: int = 0


@dataclass
class LoopbackServer:
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, body: bytes, **kw: object) -> str:
        self.routes[path] = Route(body, **kw)  # type: ignore[arg-type]
        return self.url(path)

    def sent(self, path: str) -> list[int]:
        return [h.sent for h in self.hits if h.path == path]


def _handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            route = server.routes.get(self.path)
            rng = self.headers.get("Range")
            if route is not None and route.redirect:
                server.hits.append(Hit(self.path, rng, 302))
                self.send_response(302)
                self.send_header("Location", route.redirect)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            if route is None or route.status != 200:
                status = 404 if route is None else route.status
                server.hits.append(Hit(self.path, rng, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            body = route.body
            if route.corrupt:
                mid = len(body) // 2
                body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
            start = 0
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if route.range and m:
                start = int(m.group(1))
                if route.splice is not None:
                    body = route.splice
                if start >= len(body):
                    server.hits.append(Hit(self.path, rng, 416))
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", route.content_range or f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            if not route.no_length:
                self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            hit = Hit(self.path, rng, 206 if start else 200)
            server.hits.append(hit)
            first = sum(1 for h in server.hits if h.path == self.path) == 1
            limit = route.cut_first if (first and route.cut_first is not None) else len(payload)
            if route.endless:
                limit = 1 << 62
            pos = 0
            try:
                while pos < limit:
                    at = pos % len(payload) if route.endless else pos
                    piece = payload[at:min(at + route.chunk, limit - pos + at)]
                    self.wfile.write(piece)
                    self.wfile.flush()
                    pos += len(piece)
                    hit.sent = pos
                    if route.delay:
                        time.sleep(route.delay)
            except (BrokenPipeError, ConnectionResetError):
                return
            self.close_connection = True

    return Handler


@contextlib.contextmanager
def serve() -> Iterator[LoopbackServer]:
    state = LoopbackServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    with serve() as s:
        yield s


def dead_url(path: str = "/gone") -> str:
    """A loopback URL where nothing listens (connection refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@contextlib.contextmanager
def raw_server(respond: Callable[[socket.socket, threading.Event], None], max_conns: int = 32,
               life_s: float = 60.0) -> Iterator[str]:
    """A loopback TCP server for answers http.server cannot give (not HTTP, broken headers, trickles):
    each connection's request head is read, then `respond(conn, stop)` writes whatever it likes; `stop` is
    set when the test leaves the block (a trickle must check it). Bounded: it accepts at most `max_conns`
    connections and stops by itself after `life_s` seconds. Yields its base URL (http://127.0.0.1:PORT)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.05)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)  # the request head: small, one segment on loopback
                respond(conn, stop)
            except OSError:
                pass

    def loop() -> None:
        t_end, n = time.monotonic() + life_s, 0
        while not stop.is_set() and time.monotonic() < t_end and n < max_conns:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            n += 1
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        srv.close()
