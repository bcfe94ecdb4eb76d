"""Clients that attack the exporter's HTTP server, and a scraper that measures it.

IDLE_FLOOD runs as the attacker (`Attacker.run`, Debian's python3): it keeps
COUNT connections open that never send a byte (or only the first bytes of a
request), spread round-robin over the given 127.0.0.x source addresses (all
of 127.0.0.0/8 is local, so each is a distinct source to the server), and
re-opens each one the moment it is cut (EOF, reset, or a 503), for SECONDS or
until SIGTERM; then prints one JSON line of counts.
One process with one selector: the server sees as many connections as it
will take, as fast as one client can make them.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

# argv: port count seconds source[,source...] [first bytes, as a Python bytes literal]
IDLE_FLOOD = r"""
import ast, errno, json, selectors, signal, socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sources = sys.argv[4].split(",")
first = ast.literal_eval(sys.argv[5]) if len(sys.argv) > 5 else b""
sel = selectors.DefaultSelector()
stats = {"opened": 0, "cut": 0, "answered_503": 0, "failed": 0, "held_max": 0}
held = 0
def open_one(i):
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT: port chosen at connect
    s.bind((sources[i % len(sources)], 0))
    s.setblocking(False)
    err = s.connect_ex(("127.0.0.1", port))
    if err not in (0, errno.EINPROGRESS):
        stats["failed"] += 1
        s.close()
        return False
    stats["opened"] += 1
    sel.register(s, selectors.EVENT_READ | (selectors.EVENT_WRITE if first else 0), i)
    return True
for i in range(count):
    open_one(i)
stopped = []
signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
print("started", flush=True)
end = time.monotonic() + seconds
retry = []
while time.monotonic() < end and not stopped:
    for key, events in sel.select(0.05):
        s, i = key.fileobj, key.data
        if events & selectors.EVENT_WRITE:  # connected: send the first bytes, never the rest
            try:
                s.send(first)
            except OSError:
                pass
            sel.modify(s, selectors.EVENT_READ, i)
            continue
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if data.startswith(b"HTTP/1.1 503"):
            stats["answered_503"] += 1
        elif not data:
            stats["cut"] += 1
        else:
            continue
        sel.unregister(s)
        s.close()
        retry.append(i)
    retry = [i for i in retry if not open_one(i)]
    stats["held_max"] = max(stats["held_max"], len(sel.get_map()))
print(json.dumps(stats), flush=True)
"""


@contextmanager
def idle_flood(attacker, port: int, count: int, seconds: float, sources: list[str],
               first: bytes = b"") -> Iterator[subprocess.Popen]:
    """The attacker's idle flood, running (its connections opened); killed on the way out."""
    proc = attacker.run(["/usr/bin/python3", "-c", IDLE_FLOOD, str(port), str(count),
                         str(seconds), ",".join(sources), repr(first)],
                        stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "started", f"the flood did not start: {line!r}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def flood_result(proc: subprocess.Popen, timeout: float = 30) -> dict[str, int]:
    """Stop the flood (SIGTERM) and read its counts."""
    proc.terminate()
    out, _ = proc.communicate(timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


def scrape(port: int, timeout: float = 10.0, source: str = "127.0.0.1",
           headers: dict[str, str] | None = None) -> tuple[int, float]:
    """One GET /metrics as Prometheus makes it: (status, seconds); status 0 if it failed."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        conn.request("GET", "/metrics", headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        status = resp.status
    except (OSError, http.client.HTTPException):
        status = 0
    finally:
        conn.close()
    return status, time.monotonic() - t0


def sources(first: int, n: int) -> list[str]:
    """n loopback source addresses from 127.0.0.FIRST on (127.0.1.x past 255)."""
    return [f"127.0.{(first + i) // 256}.{(first + i) % 256}" for i in range(n)]
