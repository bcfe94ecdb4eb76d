"""What the doctor needs from nginx's configuration (its files, collect.nginx_conf)."""

from __future__ import annotations

from dataclasses import asdict, field
from typing import Any

from halfopen.records import record

NGINX_KEEPALIVE_TIMEOUT_DEFAULT_S = 75  # ngx_http_core_module: keepalive_timeout 75s
NGINX_DEFAULT_CONF = "/etc/nginx/nginx.conf"  # Debian's --conf-path


@record
class NginxListen:
    """One `listen` directive."""

    address: str  # as written: "80", "0.0.0.0:8080", "[::]:443"
    port: int | None
    so_keepalive: str | None  # None: not set; "on", "off" or "IDLE:INTVL:CNT" as written
    server_name: str = ""


@record
class NginxConf:
    """keepalive_timeout values (seconds, by context) and listen sockets."""

    keepalive_timeouts: list[tuple[str, float]] = field(default_factory=list)  # (context, s)
    listens: list[NginxListen] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # running nginx processes
    config: str = ""  # the main file read, as nginx names it (-c, else its default)

    @property
    def source(self) -> str:
        """The evidence's source: the file read."""
        return self.config or "nginx configuration"

    @property
    def fix_path(self) -> str:
        """The file a config fix names: the one read, else the default."""
        return self.config or NGINX_DEFAULT_CONF

    @property
    def max_keepalive_timeout_s(self) -> float:
        """The longest idle time nginx keeps a client connection (default 75 s)."""
        if not self.keepalive_timeouts:
            return NGINX_KEEPALIVE_TIMEOUT_DEFAULT_S
        return max(s for _c, s in self.keepalive_timeouts)

    @property
    def min_keepalive_timeout_s(self) -> float:
        if not self.keepalive_timeouts:
            return NGINX_KEEPALIVE_TIMEOUT_DEFAULT_S
        return min(s for _c, s in self.keepalive_timeouts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NginxConf:
        return cls([tuple(k) for k in d.get("keepalive_timeouts", [])],
                   [NginxListen(**x) for x in d.get("listens", [])],
                   list(d.get("pids", [])), str(d.get("config", "")))
