"""A small HTTP server for /metrics that idle, slow or many clients cannot exhaust.

prometheus_client's own server gives every connection a thread, with no limit
and no idle timeout: 1,700 idle clients held 1,702 threads. Here the cost of a
connection that has not yet sent its request is one fd and one selector entry:

    accept ─> I/O thread (one selector: TLS handshake, request head) ─> queue ─> workers
              │ at max_connections, or its source at max_per_source: the oldest
              │   incomplete connection (of that source, else of all) is cut (reset)
              │   to make room; none to cut: the newcomer gets "503"
              │ head not complete read_timeout_s after accept: closed (slowloris)
              │ head over max_head_bytes: "431", closed

The read timeout counts from accept, not from the last byte: a client sending
one byte a second is cut when the timeout ends, however steady it is. Only a
complete request reaches the bounded pool of workers, which render, write
(with a total deadline) and close; one request per connection
(`Connection: close`), which every scraper handles.

Why a newcomer cuts an idle connection rather than being refused: a refusal
costs a flood nothing (it reconnects at once), so 2,000 idle connections
re-opened as they were cut kept every slot and 28 of 30 scrapes got 503
(issue 20). Cutting the oldest incomplete connection admits every newcomer;
a scraper sends its request with its connect, and the I/O thread reads a
connection as it accepts it and accepts at most `accept_burst` per wake-up,
so the request is complete (out of reach of the cutting) long before
max_connections newcomers have arrived after it. The per-source limit keeps
one address (an IPv6 /64) from holding every slot, and from cutting anyone's
connections but its own.

A failure while answering one request (a bug, a library that raises) is a
500 and one log line; the worker goes on to the next request.

Access (TLS, basic auth) comes from `webconfig.Access`; the metrics from any
`render(accept, accept_encoding) -> (content_type, body, encoding)` callable.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import queue
import selectors
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import field
from typing import Optional

from prometheus_client.exposition import choose_encoder

from halfopen.records import record

from ...model.text import shown
from .webconfig import Access

Render = Callable[[str, str], tuple[str, bytes, Optional[str]]]


@record(frozen=True)
class Limits:
    workers: int = 4  # threads that render and write responses
    max_connections: int = 256  # accepted and not yet closed, in every stage
    max_per_source: int = 32  # of those, from one address (IPv6: one /64)
    read_timeout_s: float = 10.0  # from accept to the end of the request head
    write_timeout_s: float = 10.0  # to write the whole response
    max_head_bytes: int = 8192  # request line and headers
    linger_s: float = 2.0  # a refused client's request is read and dropped this long
    max_lingering: int = 256  # refused connections kept for that; beyond, closed at once
    accept_burst: int = 32  # accepts per wake-up, so the ones accepted are read before more come


@record(frozen=True)
class Request:
    method: str
    path: str
    headers: dict = field(default_factory=dict)  # lower-case name -> value


def _canned(status: str, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n"
            ).encode("ascii")


BUSY = _canned("503 Service Unavailable", "Retry-After: 1\r\n")
TOO_BIG = _canned("431 Request Header Fields Too Large")
BAD = _canned("400 Bad Request")


_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def source_of(addr: tuple) -> str:
    """What the per-source limit counts: an IPv4 address, or an IPv6 /64 (one host's
    usual share, which it can fill with addresses at will).

    >>> source_of(("127.0.0.2", 5)), source_of(("::ffff:10.0.0.1", 5, 0, 0))
    ('127.0.0.2', '10.0.0.1')
    >>> source_of(("2001:db8:1:2:aa::1", 5, 0, 0)), source_of(("fe80::1%eth0", 5, 0, 2))
    ('2001:db8:1:2::/64', 'fe80::/64')
    """
    host = addr[0]
    if ":" not in host:
        return host
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64"


def parse_head(head: bytes) -> Request | None:
    """The request line and headers; None when they are not HTTP/1.x.

    >>> parse_head(b"GET /metrics?x=1 HTTP/1.1\\r\\nHost: a\\r\\nAccept: */*").path
    '/metrics'
    """
    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/1."):
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return Request(words[0], words[1].split("?", 1)[0], headers)


class _Linger:
    """A socket answered and shut for writing, read until EOF so close() sends no RST.

    Closing a socket with unread data (the client's request arriving after our
    503) makes the kernel send RST (tcp_close in net/ipv4/tcp.c), and the RST
    can destroy the 503 before the client reads it.
    """

    __slots__ = ("sock", "deadline")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline


class _Conn:
    __slots__ = ("sock", "source", "deadline", "buf", "handshaking")

    def __init__(self, sock: socket.socket, source: str, deadline: float,
                 handshaking: bool) -> None:
        self.sock = sock
        self.source = source
        self.deadline = deadline
        self.buf = b""
        self.handshaking = handshaking


class Server:
    """Serve `render` on a bound, listening socket; start() then shutdown()."""

    def __init__(self, listener: socket.socket, render: Render, limits: Limits | None = None,
                 access: Access | None = None, log: Callable[[str], None] | None = None) -> None:
        self.listener = listener
        self.render = render
        self.limits = limits or Limits()
        self.access = access or Access()
        # a log line may quote an exception naming a process or a file: shown()
        self.log = log or (lambda line: print(f"halfopen: exporter: {shown(line)}", file=sys.stderr))
        self._sel = selectors.DefaultSelector()
        self._pending: dict[int, _Conn] = {}  # fd -> conn, in accept order = deadline order
        self._pending_of: dict[str, dict[int, _Conn]] = {}  # source -> its part of _pending
        self._lingering: dict[int, _Linger] = {}  # fd -> refused conn, in deadline order
        self._work: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._open = 0  # connections accepted and not yet closed
        self._open_of: dict[str, int] = {}  # source -> its part of _open
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._threads: list[threading.Thread] = []
        self._accept_paused_until = 0.0

    # ------------------------------------------------------------ life

    def start(self) -> None:
        self.listener.setblocking(False)
        self._wake_r.setblocking(False)
        self._sel.register(self.listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._threads = [threading.Thread(target=self._io_loop, name="halfopen-io", daemon=True)]
        self._threads += [threading.Thread(target=self._worker, name=f"halfopen-worker-{i}",
                                           daemon=True) for i in range(self.limits.workers)]
        for t in self._threads:
            t.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        for _ in range(self.limits.workers):
            self._work.put(None)
        for t in self._threads:
            t.join(timeout)
        self.listener.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return self._open

    # ------------------------------------------------------------ I/O thread

    def _io_loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if self._accept_paused_until and now >= self._accept_paused_until:
                self._accept_paused_until = 0.0
                self._sel.register(self.listener, selectors.EVENT_READ, "accept")
            deadlines = [next(iter(self._pending.values())).deadline] if self._pending else []
            if self._lingering:
                deadlines.append(next(iter(self._lingering.values())).deadline)
            wait = min([1.0] + [d - now for d in deadlines])
            if self._accept_paused_until:
                wait = min(wait, self._accept_paused_until - now)
            # accepts last: a client that closed in the same wake-up frees its slot
            # first, so it is not counted against the connections behind it
            ready = sorted(self._sel.select(max(wait, 0.0)), key=lambda ev: ev[0].data == "accept")
            for key, _events in ready:
                try:
                    self._event(key)
                except Exception as exc:  # noqa: BLE001 - one connection's bug; keep serving
                    self.log(f"connection failed: {shown(f'{type(exc).__name__}: {exc}')}")
                    self._discard(key.data)
            self._expire(time.monotonic())
        for conn in list(self._pending.values()):
            self._drop(conn)
        for lin in list(self._lingering.values()):
            self._unlinger(lin)

    def _event(self, key: selectors.SelectorKey) -> None:
        if key.data == "accept":
            self._accept()
        elif key.data == "wake":
            self._wake_r.recv(64)
        elif isinstance(key.data, _Linger):
            self._drain(key.data)
        else:
            self._readable(key.data)

    def _discard(self, data: object) -> None:
        """After a failure while handling `data`: close it, whatever state it was left in."""
        if isinstance(data, _Conn) and self._pending.get(data.sock.fileno()) is data:
            self._drop(data)
        elif isinstance(data, _Linger) and self._lingering.get(data.sock.fileno()) is data:
            self._unlinger(data)

    def _accept(self) -> None:
        for _ in range(self.limits.accept_burst):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: out of fds or memory; stop accepting for a
                # moment rather than spin on a listener that stays readable.
                self.log(f"accept failed ({exc.strerror}); pausing accepts for 0.1s")
                self._sel.unregister(self.listener)
                self._accept_paused_until = time.monotonic() + 0.1
                return
            source = source_of(addr)
            if self._make_room(source):
                self._admit(sock, source)
            else:
                self._refuse(sock)

    def _make_room(self, source: str) -> bool:
        """Count a newcomer from `source` in, cutting the oldest incomplete connection of
        that source (at its limit) or of all (at the cap) if need be; False: no room."""
        while True:
            with self._lock:
                if self._open_of.get(source, 0) >= self.limits.max_per_source:
                    victims = self._pending_of.get(source, {})
                elif self._open >= self.limits.max_connections:
                    victims = self._pending
                else:
                    self._open += 1
                    self._open_of[source] = self._open_of.get(source, 0) + 1
                    return True
            if not victims:
                return False  # every slot is a request being answered: they end soon
            self._cut(next(iter(victims.values())))

    def _refuse(self, sock: socket.socket) -> None:
        """Over the cap: a plain client reads 503; a TLS one is closed (no handshake spent)."""
        sock.setblocking(False)
        if self.access.tls is not None:
            sock.close()
            return
        self._linger(sock, BUSY)

    def _linger(self, sock: socket.socket, response: bytes) -> None:
        """Answer and close a connection that holds no slot (max_lingering bound its fds)."""
        try:
            sock.send(response)
            if isinstance(sock, ssl.SSLSocket):
                raise OSError("TLS: no half-close")  # its close_notify needs a handshake state
            sock.shutdown(socket.SHUT_WR)
        except (ssl.SSLError, OSError):
            sock.close()  # the client left, or TLS: closing is all there is
            return
        if len(self._lingering) >= self.limits.max_lingering:
            sock.close()
            return
        lin = _Linger(sock, time.monotonic() + self.limits.linger_s)
        self._lingering[sock.fileno()] = lin
        self._sel.register(sock, selectors.EVENT_READ, lin)

    def _drain(self, lin: _Linger) -> None:
        try:
            while lin.sock.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass  # reset by the client: done either way
        self._unlinger(lin)

    def _unlinger(self, lin: _Linger) -> None:
        self._sel.unregister(lin.sock)
        del self._lingering[lin.sock.fileno()]
        lin.sock.close()

    def _admit(self, sock: socket.socket, source: str) -> None:
        sock.setblocking(False)
        handshaking = False
        if self.access.tls is not None:
            try:
                sock = self.access.tls.wrap_socket(sock, server_side=True,
                                                   do_handshake_on_connect=False)
            except (ssl.SSLError, OSError):
                sock.close()
                self._release(source)
                return
            handshaking = True
        conn = _Conn(sock, source, time.monotonic() + self.limits.read_timeout_s, handshaking)
        self._pending[sock.fileno()] = conn
        self._pending_of.setdefault(source, {})[sock.fileno()] = conn
        self._sel.register(sock, selectors.EVENT_READ, conn)
        # the request (or ClientHello) is often there already: complete at once, it is
        # out of reach of _make_room's cutting
        self._readable(conn)

    def _readable(self, conn: _Conn) -> None:
        sock = conn.sock
        try:
            if conn.handshaking and isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
                conn.handshaking = False
                self._sel.modify(sock, selectors.EVENT_READ, conn)
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    self._drop(conn)
                    return
                conn.buf += chunk
                if not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                    break
        except ssl.SSLWantReadError:
            self._sel.modify(sock, selectors.EVENT_READ, conn)
            return
        except ssl.SSLWantWriteError:
            self._sel.modify(sock, selectors.EVENT_WRITE, conn)
            return
        except (BlockingIOError, InterruptedError):
            return
        except (ssl.SSLError, OSError):
            self._drop(conn)
            return
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0 and len(conn.buf) <= self.limits.max_head_bytes:
            return
        if end < 0 or end > self.limits.max_head_bytes:
            self._answer_and_drop(conn, TOO_BIG)
            return
        request = parse_head(conn.buf[:end])
        if request is None:
            self._answer_and_drop(conn, BAD)
            return
        self._forget(conn)
        self._work.put((conn, request))

    def _expire(self, now: float) -> None:
        # insertion order is deadline order: stop at the first one still in time
        for conn in list(itertools.takewhile(lambda c: c.deadline <= now,
                                             self._pending.values())):
            self._drop(conn)
        for lin in list(itertools.takewhile(lambda x: x.deadline <= now,
                                            self._lingering.values())):
            self._unlinger(lin)

    def _answer_and_drop(self, conn: _Conn, response: bytes) -> None:
        self._forget(conn)
        self._release(conn.source)
        self._linger(conn.sock, response)

    def _cut(self, conn: _Conn) -> None:
        """Make room: an incomplete connection is reset (its slot free now).

        A reset, not a FIN: a FIN leaves our end in TIME_WAIT for 60 s, and a flood
        cut 5,000 times a second left 300,000 of them, which every scrape then read
        (and the host kept) until they expired."""
        try:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        except OSError:
            pass  # already reset by the client
        self._drop(conn)

    def _forget(self, conn: _Conn) -> None:
        self._sel.unregister(conn.sock)
        fd = conn.sock.fileno()
        del self._pending[fd]
        mine = self._pending_of[conn.source]
        del mine[fd]
        if not mine:
            del self._pending_of[conn.source]

    def _drop(self, conn: _Conn) -> None:
        self._forget(conn)
        self._closed(conn)

    def _closed(self, conn: _Conn) -> None:
        conn.sock.close()
        self._release(conn.source)

    def _release(self, source: str) -> None:
        with self._lock:
            self._open -= 1
            left = self._open_of[source] - 1
            if left:
                self._open_of[source] = left
            else:
                del self._open_of[source]

    # ------------------------------------------------------------ workers

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            conn, request = item
            try:
                self._respond(conn.sock, request)
            except (ssl.SSLError, OSError):
                pass  # the client went away mid-response: nothing to tell it
            except Exception as exc:  # noqa: BLE001 - this request failed, not the worker
                self._failed(request, exc)
            finally:
                self._closed(conn)

    def _failed(self, request: Request, exc: BaseException) -> None:
        self.log(f"{shown(request.method)} {shown(request.path)} failed: "
                 f"{shown(f'{type(exc).__name__}: {exc}')}")

    def _respond(self, sock: socket.socket, request: Request) -> None:
        try:
            status, headers, body = self._handle(request)
        except Exception as exc:  # noqa: BLE001 - a 500 for this one, the worker lives on
            self._failed(request, exc)
            status, headers, body = ("500 Internal Server Error",
                                     [("Content-Type", "text/plain; charset=utf-8")],
                                     b"request failed; see the exporter's log\n")
        deadline = time.monotonic() + self.limits.write_timeout_s
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if request.method != "HEAD":
            data += body
        sock.setblocking(True)
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("write deadline passed")
            sock.settimeout(left)
            view = view[sock.send(view):]

    def _handle(self, request: Request) -> tuple[str, list[tuple[str, str]], bytes]:
        text = [("Content-Type", "text/plain; charset=utf-8")]
        if request.method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", text + [("Allow", "GET, HEAD")], b"GET or HEAD\n"
        if self.access.users and not self._authorized(request.headers.get("authorization", "")):
            return ("401 Unauthorized", text + [("WWW-Authenticate", 'Basic realm="halfopen"')],
                    b"Unauthorized\n")
        if request.path == "/":
            return "200 OK", text, b"halfopen exporter: metrics at /metrics\n"
        if request.path != "/metrics":
            return "404 Not Found", text, b"Not found: metrics are at /metrics\n"
        try:
            content_type, body, encoding = self.render(request.headers.get("accept", ""),
                                                       request.headers.get("accept-encoding", ""))
        except Exception as exc:  # noqa: BLE001 - one scrape failed: say so, keep serving
            self.log(f"scrape failed: {shown(f'{type(exc).__name__}: {exc}')}")
            return "500 Internal Server Error", text, b"scrape failed; see the exporter's log\n"
        headers = [("Content-Type", content_type)]
        if encoding:
            headers.append(("Content-Encoding", encoding))
        return "200 OK", headers, body

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode(
                "utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return bool(sep) and self.access.check(user, password)


def metrics_render(registry) -> Render:
    """prometheus_client's exposition (text or OpenMetrics, as Accept asks; gzip if offered)."""
    def render(accept: str, accept_encoding: str) -> tuple[str, bytes, str | None]:
        encoder, content_type = choose_encoder(accept)
        body = encoder(registry)
        if "gzip" in accept_encoding.lower():
            return content_type, gzip.compress(body, compresslevel=6), "gzip"
        return content_type, body, None

    return render


def listen(host: str, port: int, backlog: int = 4096) -> socket.socket:
    """A listening TCP socket on host:port (an IPv6 literal or name resolves as usual).

    The accept queue is made as long as the kernel allows (net.core.somaxconn, 4096
    since Linux 5.4): when it is full the kernel drops a new SYN, and the client tries
    again 1, 3, 7 s later. With 1,024 places, 2,000 idle clients re-opening as they
    were cut kept it full, and a scrape waited 2.5 s (median) for its second SYN.
    Each place costs kernel memory only while it is used."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _name, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
