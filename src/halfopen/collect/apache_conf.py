"""Apache httpd's keep-alive timeouts, from its configuration files (never by running it).

The files: the master's `-f FILE` (relative to its `-d ServerRoot`), else
Debian's /etc/apache2/apache2.conf (httpd: /etc/httpd/conf/httpd.conf), and
every `Include` / `IncludeOptional` in order (wildcards in any component, a
directory: its files, sorted; relative paths from ServerRoot; a path holding a
${VARIABLE} is not followed: the variables live in the server's environment).
`<IfModule>`/`<IfDefine>` are not evaluated: their directives count as written.

Kept: `KeepAlive On|Off` (default On), `KeepAliveTimeout N[ms]` (default 5 s),
`Timeout N` (default 60 s), `Listen`, `ServerRoot`, the includes and
`<VirtualHost ...>`. A keep-alive setting inside a virtual host applies to the
ports it names, before the server's own.

    >>> r = parse_lines([(2, ("keepalivetimeout", "7")), (3, ("listen", "127.0.0.1:8080")),
    ...                  (4, ("<virtualhost", "*:8081>")), (5, ("keepalive", "Off")),
    ...                  (6, ("</virtualhost>",))], "a.conf")
    >>> [(t.section, t.ports, t.idle.text()) for t in r]
    [('VirtualHost *:8081', [8081], 'KeepAlive Off'), ('', [8080], 'KeepAliveTimeout 7')]
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from ..model.servers import APACHE, ServerTimeouts, Setting
from . import conf_lines
from .config_files import ConfigFiles, Refused

DEFAULT_CONF = {"apache2": "/etc/apache2/apache2.conf", "httpd": "/etc/httpd/conf/httpd.conf"}
DEFAULT_ROOT = {"apache2": "/etc/apache2", "httpd": "/etc/httpd"}
KEEPALIVE_TIMEOUT_DEFAULT_S = 5.0  # httpd core: KeepAliveTimeout 5
TIMEOUT_DEFAULT_S = 60.0  # httpd 2.4 core: Timeout 60
KEPT = frozenset(("keepalive", "keepalivetimeout", "timeout", "listen", "serverroot", "include",
                  "includeoptional", "<virtualhost", "</virtualhost>"))
MAX_DEPTH = 16


def parse_seconds(word: str) -> float:
    """'5' -> 5.0, '500ms' -> 0.5 (KeepAliveTimeout num[ms]).

    >>> parse_seconds("5"), parse_seconds("500ms")
    (5.0, 0.5)
    """
    m = re.fullmatch(r"(\d+)(ms)?", word)
    if m is None:
        raise ValueError(f"not an httpd time: {word!r}")
    return int(m.group(1)) / (1000 if m.group(2) else 1)


def _port(address: str) -> int | None:
    """'80' -> 80, '10.0.0.1:8080' -> 8080, '[::]:443' -> 443, '*:80>' -> 80."""
    tail = address.rstrip(">").rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() and 0 < int(tail) < 65536 else None


class _State:
    """What the lines read so far set: the server's and each virtual host's."""

    def __init__(self) -> None:
        self.server: dict[str, Setting] = {}
        self.listens: list[int] = []
        self.vhosts: list[tuple[str, list[int], dict[str, Setting]]] = []
        self.vhost: tuple[str, list[int], dict[str, Setting]] | None = None
        self.root = ""

    def apply(self, number: int, w: tuple[str, ...], path: str) -> None:
        where = f"{path}:{number}"
        head = w[0]
        if head == "<virtualhost":
            addrs = [a.rstrip(">") for a in w[1:] if a != ">"]
            ports = [p for p in (_port(a) for a in addrs) if p is not None]
            self.vhost = ("VirtualHost " + " ".join(addrs), ports, {})
            self.vhosts.append(self.vhost)
            return
        if head == "</virtualhost>":
            self.vhost = None
            return
        if len(w) < 2:
            return
        into = self.vhost[2] if self.vhost is not None else self.server
        if head == "listen" and self.vhost is None:
            port = _port(w[1])
            if port is not None:
                self.listens.append(port)
        elif head == "serverroot" and self.vhost is None:
            self.root = w[1]
        elif head == "keepalive":
            on = w[1].lower() == "on"
            into["keepalive"] = Setting("KeepAlive", None if on else 0.0, where, w[1])
        elif head in ("keepalivetimeout", "timeout"):
            try:
                seconds = parse_seconds(w[1])
            except ValueError:
                return  # httpd -t would refuse it
            name = "KeepAliveTimeout" if head == "keepalivetimeout" else "Timeout"
            into[head] = Setting(name, seconds, where, w[1])

    def result(self) -> list[ServerTimeouts]:
        out = []
        for section, ports, own in self.vhosts:
            if ports and ("keepalive" in own or "keepalivetimeout" in own):
                out.append(_timeouts(section, ports, {**self.server, **own}))
        out.append(_timeouts("", sorted(set(self.listens)), self.server))
        return out


def _timeouts(section: str, ports: list[int], s: dict[str, Setting]) -> ServerTimeouts:
    ka = s.get("keepalive")
    kat = s.get("keepalivetimeout") or Setting("KeepAliveTimeout", KEEPALIVE_TIMEOUT_DEFAULT_S,
                                                 "default", "5")
    to = s.get("timeout") or Setting("Timeout", TIMEOUT_DEFAULT_S, "default", "60")
    idle = ka if ka is not None and ka.seconds == 0.0 else kat  # Off: closed after each response
    settings = [x for x in (ka, kat, to) if x is not None]
    return ServerTimeouts(APACHE, [], ports, idle, section, settings)


def parse_lines(lines: Iterable[tuple[int, tuple[str, ...]]], path: str) -> list[ServerTimeouts]:
    """The keep-alive timeouts of kept lines (includes not followed)."""
    st = _State()
    for number, w in lines:
        st.apply(number, w, path)
    return st.result()


def main_file(argv: list[str], comm: str) -> tuple[str, str]:
    """(the main file, ServerRoot) from httpd's command line.

    >>> main_file(["/usr/sbin/apache2", "-k", "start"], "apache2")
    ('/etc/apache2/apache2.conf', '/etc/apache2')
    >>> main_file(["apache2", "-d", "/srv/a", "-f", "a.conf", "-DFOREGROUND"], "apache2")
    ('/srv/a/a.conf', '/srv/a')
    """
    root, conf = DEFAULT_ROOT.get(comm, "/etc/apache2"), None
    for i, word in enumerate(argv[1:], 1):
        for flag in ("-d", "-f"):
            value = None
            if word == flag and i + 1 < len(argv):
                value = argv[i + 1]
            elif word.startswith(flag) and len(word) > 2:
                value = word[2:]
            if value is not None and flag == "-d":
                root = value
            elif value is not None:
                conf = value
    if conf is None:
        return DEFAULT_CONF.get(comm, DEFAULT_CONF["apache2"]), root
    return (conf if conf.startswith("/") else os.path.join(root, conf)), root


class Reader:
    """One httpd master's configuration: its main file and includes, in order."""

    kind = APACHE

    def __init__(self, files: ConfigFiles, argv: list[str], cwd: str, comm: str = "apache2") -> None:
        self.files = files
        self.main, root = main_file(argv, comm)
        self.state = _State()
        self.state.root = root

    def run(self) -> None:
        self._file(self.main, 0)

    def _file(self, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Refused(f"{path}: includes nested deeper than {MAX_DEPTH}")
        for number, w in self.files.load(path, _outline):
            if w[0] in ("include", "includeoptional"):
                for arg in w[1:2]:
                    self._include(arg, w[0] == "includeoptional", depth)
                continue
            self.state.apply(number, w, path)

    def _include(self, pattern: str, optional: bool, depth: int) -> None:
        if "${" in pattern:
            return  # a variable of the server's environment: not known here
        full = pattern if pattern.startswith("/") else os.path.join(self.state.root, pattern)
        for name in self.files.glob(full):
            if self.files.is_dir(name):
                for child in sorted(self.files.listdir(name)):
                    self._load(os.path.join(name, child), optional, depth)
            else:
                self._load(name, optional, depth)

    def _load(self, path: str, optional: bool, depth: int) -> None:
        try:
            self._file(path, depth + 1)
        except Refused as exc:
            if optional and str(exc).startswith("cannot open") and "No such file" in str(exc):
                return  # IncludeOptional: a missing file is no error
            raise

    def result(self) -> list[ServerTimeouts]:
        out = self.state.result()
        for t in out:
            t.config = self.main
        return out


def _outline(text: str, budget) -> list[conf_lines.Line]:
    return conf_lines.outline(text, KEPT, budget, inline_comments=False, continuation=True)
