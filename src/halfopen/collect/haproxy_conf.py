"""haproxy's timeouts, from its configuration files (never by running haproxy).

The files: each `-f FILE|DIR` of the master's command line in order (a
directory: its `*.cfg` files, sorted, as haproxy loads them), else Debian's
/etc/haproxy/haproxy.cfg. Kept of each file (collect.conf_lines): the section
headers, `mode`, `bind`, `timeout` lines. A proxy (frontend, listen, backend)
starts from the `defaults` section named by its `from`, else the last one above
it (a `defaults` section resets the previous one's values).

A frontend's or listen's idle timeout toward its clients:
  - mode http: the shorter of `timeout http-keep-alive` (else `timeout
    http-request`) and `timeout client` - the client timeout still applies under
    the keep-alive one (haproxy issue #2334);
  - mode tcp (haproxy's default mode): `timeout tunnel` when set (it supersedes
    the client timeout once the connection is established), else `timeout client`;
  - none set: haproxy never closes an idle client connection (it warns at start).

    >>> r = parse_lines([(1, ("defaults",)), (2, ("mode", "http")), (3, ("timeout", "client", "2s")),
    ...                  (4, ("frontend", "web")), (5, ("bind", ":8080,127.0.0.1:81-82"))], "h.cfg")
    >>> [(t.section, t.ports, t.idle.text(), t.idle.where) for t in r]
    [('frontend web', [81, 82, 8080], 'timeout client 2s', 'h.cfg:3')]
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ..model.servers import HAPROXY, ServerTimeouts, Setting
from . import conf_lines
from .config_files import ConfigFiles

DEFAULT_CONF = "/etc/haproxy/haproxy.cfg"  # Debian's CONFIG in /etc/default/haproxy
SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers",
            "userlist", "mailers", "program", "http-errors", "ring", "cache", "fcgi-app",
            "crt-store", "traces", "log-forward")
PROXIES = ("frontend", "listen", "backend")
KEPT = frozenset((*SECTIONS, "mode", "bind", "timeout"))
TIMEOUTS = ("client", "server", "http-keep-alive", "http-request", "tunnel", "client-fin",
            "server-fin")
MAX_PORTS = 1024  # ports kept of one bind range
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TIME = re.compile(r"^(\d+)(us|ms|s|m|h|d)?$")


def parse_time(word: str) -> float:
    """haproxy's time syntax in seconds; a bare number is milliseconds.

    >>> parse_time("50000"), parse_time("2s"), parse_time("1m"), parse_time("500us")
    (50.0, 2.0, 60.0, 0.0005)
    """
    m = _TIME.match(word)
    if m is None:
        raise ValueError(f"not a haproxy time: {word!r}")
    return int(m.group(1)) * _UNITS[m.group(2) or "ms"]


def bind_ports(address: str) -> list[int]:
    """The TCP ports one `bind` argument names (a comma list of [addr]:port[-port]).

    >>> bind_ports(":8080"), bind_ports("ipv6@:::443,*:80"), bind_ports("/run/h.sock")
    ([8080], [443, 80], [])
    """
    ports: list[int] = []
    for part in address.split(","):
        if part.startswith(("/", "unix@", "abns@", "fd@", "sockpair@", "uxst@", "uxdg@")):
            continue
        tail = part.rsplit(":", 1)[-1] if ":" in part else ""
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", tail)
        if m is None:
            continue
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        ports += [p for p in range(lo, min(hi, lo + MAX_PORTS - 1) + 1) if 0 < p < 65536]
    return ports


class _Section:
    """One section's values as read so far: its mode, timeouts and bound ports."""

    def __init__(self, kind: str, name: str, base: _Section | None) -> None:
        self.kind, self.name = kind, name
        self.mode: str | None = base.mode if base else None
        self.timeouts: dict[str, Setting] = dict(base.timeouts) if base else {}
        self.ports: list[int] = []


def parse_lines(lines: Iterable[tuple[int, tuple[str, ...]]], path: str,
                state: dict | None = None) -> list[ServerTimeouts]:
    """The frontends' and listens' timeouts of kept lines (one file's, or several files'
    with a shared `state`: defaults carry from one file to the next)."""
    st = state if state is not None else {"defaults": {}, "last": None, "proxies": []}
    current: _Section | None = None
    for number, w in lines:
        where = f"{path}:{number}"
        head = w[0]
        if head in SECTIONS:
            name = w[1] if len(w) > 1 and w[1] != "from" else ""
            base_name = w[w.index("from") + 1] if "from" in w[:-1] else None
            base = st["defaults"].get(base_name) if base_name is not None else None
            if head == "defaults":
                current = _Section(head, name, base)
                st["last"] = current
                if name:
                    st["defaults"][name] = current
            elif head in PROXIES:
                current = _Section(head, name, base or st["last"])
                st["proxies"].append(current)
            else:
                current = None  # global, peers, ...: nothing read there
            continue
        if current is None:
            continue
        if head == "mode" and len(w) > 1:
            current.mode = w[1]
        elif head == "bind" and len(w) > 1 and current.kind != "defaults":
            current.ports += bind_ports(w[1])
        elif head == "timeout" and len(w) > 2 and w[1] in TIMEOUTS:
            try:
                seconds = parse_time(w[2])
            except ValueError:
                continue  # haproxy -c would refuse it; nothing to compare
            current.timeouts[w[1]] = Setting(f"timeout {w[1]}", seconds, where, w[2])
    return [_timeouts(p) for p in st["proxies"] if p.kind in ("frontend", "listen")] \
        if state is None else []


def idle_setting(mode: str | None, timeouts: dict[str, Setting]) -> Setting | None:
    """The setting that closes an idle client connection of a frontend (see the module)."""
    client = timeouts.get("client")
    if mode == "http":
        keep = timeouts.get("http-keep-alive") or timeouts.get("http-request")
        if keep is not None and (client is None or (keep.seconds or 0) < (client.seconds or 0)):
            return keep
        return client
    return timeouts.get("tunnel") or client


def _timeouts(p: _Section) -> ServerTimeouts:
    settings = [p.timeouts[k] for k in TIMEOUTS if k in p.timeouts]
    return ServerTimeouts(HAPROXY, [], sorted(set(p.ports)), idle_setting(p.mode, p.timeouts),
                          f"{p.kind} {p.name}".strip(), settings)


def main_files(argv: list[str]) -> list[str]:
    """The -f arguments of haproxy's command line (files or directories), else the default.

    >>> main_files(["/usr/sbin/haproxy", "-Ws", "-f", "/etc/h.cfg", "-f/etc/h.d", "-p", "x"])
    ['/etc/h.cfg', '/etc/h.d']
    >>> main_files(["haproxy", "-db"])
    ['/etc/haproxy/haproxy.cfg']
    """
    found = []
    for i, word in enumerate(argv[1:], 1):
        if word == "-f" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif word.startswith("-f") and len(word) > 2:
            found.append(word[2:])
    return found or [DEFAULT_CONF]


class Reader:
    """One haproxy master's configuration: its -f files and directories, in order."""

    kind = HAPROXY

    def __init__(self, files: ConfigFiles, argv: list[str], cwd: str) -> None:
        self.files = files
        self.mains = [m if m.startswith("/") else os.path.join(cwd, m) for m in main_files(argv)]
        self.main = self.mains[0]
        self.state: dict = {"defaults": {}, "last": None, "proxies": []}

    def run(self) -> None:
        for main in self.mains:
            if self.files.is_dir(main):
                names = sorted(n for n in self.files.listdir(main) if n.endswith(".cfg"))
                paths = [os.path.join(main, n) for n in names]
            else:
                paths = [main]
            for path in paths:
                lines = self.files.load(path, _outline)
                parse_lines(lines, path, self.state)

    def result(self) -> list[ServerTimeouts]:
        out = [_timeouts(p) for p in self.state["proxies"] if p.kind in ("frontend", "listen")]
        for t in out:
            t.config = self.main
        return out


def _outline(text: str, budget) -> list[conf_lines.Line]:
    return conf_lines.outline(text, KEPT, budget)
