"""A server's idle timeouts, as its own configuration sets them: one shape for every server.

collect.server_conf reads haproxy's, redis's and Apache httpd's files (nginx's come
from collect.nginx_conf as NginxConf, mapped here by `of_nginx`), so the rules read
one record whatever the server: which processes, which listening ports, how long an
idle client connection is kept, and where that was written.

    >>> t = ServerTimeouts("haproxy", [812], [8080], Setting("timeout client", 2.0,
    ...                    "/etc/haproxy/haproxy.cfg:26"), "frontend web")
    >>> t.idle_timeout_s, t.says()
    (2.0, '`timeout client 2s` (haproxy)')
    >>> t.serves(812, 8080), t.serves(812, 9090), t.serves(9, 8080)
    (True, False, False)
"""

from __future__ import annotations

from dataclasses import asdict, field
from typing import Any

from halfopen.records import record

from .nginx import NginxConf

NGINX, HAPROXY, REDIS, APACHE = "nginx", "haproxy", "redis", "apache2"


@record(frozen=True)
class Setting:
    """One timeout as the configuration writes it."""

    name: str  # the directive: "timeout client", "KeepAliveTimeout", "timeout"
    seconds: float | None  # None: off (redis `timeout 0`: idle clients are never closed)
    where: str  # "FILE:LINE", or "default" (not written: the server's built-in value)
    written: str = ""  # the value as written ("2s", "5000"), for the title

    def text(self) -> str:
        """'timeout client 2s', 'KeepAliveTimeout 5', 'KeepAlive Off'."""
        return f"{self.name} {self.written or _short(self.seconds)}"


@record
class ServerTimeouts:
    """How long a server keeps an idle client connection, for some of its listening ports.

    kind: NGINX, HAPROXY, REDIS or APACHE; pids: the server's processes (master and
    workers); ports: the listening ports this applies to ([]: every port the
    processes listen on: the configuration names none); idle: the setting that
    closes an idle client connection (None: nothing does); section: where it
    applies ("frontend web", "VirtualHost *:8080", ""); settings: every timeout read
    for this section (evidence); config: the main file read."""

    kind: str
    pids: list[int]
    ports: list[int]
    idle: Setting | None
    section: str = ""
    settings: list[Setting] = field(default_factory=list)
    config: str = ""

    @property
    def idle_timeout_s(self) -> float | None:
        return self.idle.seconds if self.idle is not None else None

    def serves(self, pid: int | None, port: int) -> bool:
        """Do these timeouts apply to a connection accepted by `pid` on `port`?"""
        return pid in self.pids and (not self.ports or port in self.ports)

    def says(self) -> str:
        """How a title names the timeout: '`timeout client 2s` (haproxy)'."""
        if self.idle is None:
            return f"no idle timeout ({self.kind})"
        return f"`{self.idle.text()}` ({self.kind})"

    def snippet(self, seconds: int) -> str:
        """The line that sets the idle timeout to `seconds`, where it goes."""
        where = f"   # in {self.section}" if self.section else ""
        if self.kind == NGINX:
            return f"keepalive_timeout {seconds}s;   # in http {{}}"
        if self.kind == HAPROXY:
            name = self.idle.name if self.idle is not None else "timeout client"
            return f"{name} {seconds}s{where}"
        if self.kind == REDIS:
            return f"timeout {seconds}"
        return f"KeepAliveTimeout {seconds}{where}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServerTimeouts:
        idle = d.get("idle")
        return cls(str(d["kind"]), [int(p) for p in d.get("pids", [])],
                   [int(p) for p in d.get("ports", [])],
                   Setting(**idle) if idle else None, str(d.get("section", "")),
                   [Setting(**s) for s in d.get("settings", [])], str(d.get("config", "")))


@record
class ServerFacts:
    """What collect.server_conf read: every server's timeouts, and notes on those not read."""

    timeouts: list[ServerTimeouts] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"timeouts": [t.to_dict() for t in self.timeouts], "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServerFacts:
        return cls([ServerTimeouts.from_dict(t) for t in d.get("timeouts", [])],
                   [str(n) for n in d.get("notes", [])])


def of_nginx(conf: NginxConf) -> ServerTimeouts:
    """nginx's facts in the common shape: the shortest keepalive_timeout (default 75 s),
    for every port it listens on."""
    settings = [Setting("keepalive_timeout", s, f"{conf.source} ({ctx})", _short(s))
                for ctx, s in conf.keepalive_timeouts]
    idle = (min(settings, key=lambda s: s.seconds or 0.0) if settings else
            Setting("keepalive_timeout", conf.min_keepalive_timeout_s, "default", "75s"))
    ports = sorted({x.port for x in conf.listens if x.port is not None})
    return ServerTimeouts(NGINX, list(conf.pids), ports, idle, "http", settings, conf.config)


def _short(seconds: float | None) -> str:
    """'2s', '0.5s', '75s', 'off'."""
    if seconds is None:
        return "off"
    return f"{seconds:g}s"
