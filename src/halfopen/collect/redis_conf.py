"""redis's timeouts, from its configuration file (never by running redis or asking it).

The file: the first argument of redis-server's command line when it is one
(`redis-server /etc/redis/redis.conf --port 7000`), with the `--name value`
options after it applied last, as redis does. redis rewrites its command line
into a process title (`set-proc-title yes`, the default: "/usr/bin/redis-server
127.0.0.1:6379"), which hides the file unless `proc-title-template` names
{config-file}; then Debian's /etc/redis/redis.conf is read, and the rule checks
that the port it names is one the process listens on (ServerTimeouts.ports).
`include` directives are followed (globs, as redis 7 does), in order; a later
value wins.

Kept: `timeout` (seconds an idle client is kept; 0: forever, the default),
`tcp-keepalive` (seconds between keepalive probes to clients; default 300),
`port`, `tls-port`, `include`.

    >>> t = parse_lines([(3, ("timeout", "2")), (4, ("port", "7000")), (5, ("tcp-keepalive", "15"))], "r.conf")
    >>> t.ports, t.idle.text(), [s.text() for s in t.settings]
    ([7000], 'timeout 2', ['timeout 2', 'tcp-keepalive 15'])
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ..model.servers import REDIS, ServerTimeouts, Setting
from . import conf_lines
from .config_files import ConfigFiles, Refused

DEFAULT_CONF = "/etc/redis/redis.conf"  # Debian's redis-server.service
DEFAULT_PORT = 6379
KEPT = frozenset(("timeout", "tcp-keepalive", "port", "tls-port", "include"))
MAX_DEPTH = 16
_ADDRESS = re.compile(r"^[^/]*:\d+$|^unixsocket:")  # a title's {listen-addr}


def main_file(argv: list[str]) -> tuple[str | None, list[tuple[str, ...]]]:
    """(the configuration file redis-server was started with, or None when the command
    line does not say; the `--name value` options it names after it).

    >>> main_file(["redis-server", "/srv/r.conf", "--port", "7000", "--timeout", "3"])
    ('/srv/r.conf', [('port', '7000'), ('timeout', '3')])
    >>> main_file(["/usr/bin/redis-server 127.0.0.1:6379"])
    (None, [])
    >>> main_file(["/usr/bin/redis-server *:6379 /etc/redis/r2.conf"])
    ('/etc/redis/r2.conf', [])
    """
    if len(argv) == 1:  # retitled: one string; a {config-file} is the absolute path in it
        words = argv[0].split()[1:]
        return next((w for w in words if w.startswith("/")), None), []
    args = argv[1:]
    path = None
    if args and not args[0].startswith("-") and not _ADDRESS.match(args[0]):
        path, args = args[0], args[1:]
    options: list[tuple[str, ...]] = []
    for word in args:
        if word.startswith("--") and len(word) > 2:
            options.append((word[2:].lower(),))
        elif options:
            options[-1] = (*options[-1], word)
    return path, options


def parse_lines(lines: Iterable[tuple[int, tuple[str, ...]]], path: str,
                state: dict | None = None) -> ServerTimeouts:
    """The timeouts of kept lines; with `state`, added to what earlier files set."""
    st = state if state is not None else {}
    for number, w in lines:
        if len(w) < 2 or w[0] == "include":
            continue
        st[w[0]] = (w[1], f"{path}:{number}" if number else path)
    return of_state(st)


def of_state(st: dict) -> ServerTimeouts:
    settings = []
    for name, default in (("timeout", "0"), ("tcp-keepalive", "300")):
        value, where = st.get(name, (default, "default"))
        try:
            seconds = float(int(value))
        except ValueError:
            continue  # redis would not start with it
        settings.append(Setting(name, seconds if seconds > 0 else None, where, value))
    ports = []
    for name in ("port", "tls-port"):
        value = st.get(name, (str(DEFAULT_PORT) if name == "port" else "0", ""))[0]
        if value.isdigit() and 0 < int(value) < 65536:
            ports.append(int(value))
    idle = next((s for s in settings if s.name == "timeout"), None)
    return ServerTimeouts(REDIS, [], ports, idle, "", settings)


class Reader:
    """One redis-server's configuration: its file and includes, then its command line's
    options."""

    kind = REDIS

    def __init__(self, files: ConfigFiles, argv: list[str], cwd: str) -> None:
        self.files = files
        path, self.options = main_file(argv)
        self.named = path is not None
        path = path or DEFAULT_CONF
        self.main = path if path.startswith("/") else os.path.join(cwd, path)
        self.state: dict = {}

    def run(self) -> None:
        self._file(self.main, 0)
        parse_lines(((0, o) for o in self.options), "the command line", self.state)

    def _file(self, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Refused(f"{path}: includes nested deeper than {MAX_DEPTH}")
        lines = self.files.load(path, _outline)
        for number, w in lines:
            if w[0] == "include" and len(w) > 1:
                for name in self.files.glob(w[1]):
                    self._file(name, depth + 1)
                continue
            parse_lines([(number, w)], path, self.state)

    def result(self) -> list[ServerTimeouts]:
        t = of_state(self.state)
        t.config = self.main
        return [t]


def _outline(text: str, budget) -> list[conf_lines.Line]:
    return conf_lines.outline(text, KEPT, budget, inline_comments=False)
