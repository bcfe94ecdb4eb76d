"""The server at the other end of a client's connections, when it listens on this host too.

Its idle timeout may then be known, from its own configuration: nginx's
keepalive_timeout (collect.nginx_conf), haproxy's `timeout client` /
`http-keep-alive` / `tunnel`, redis's `timeout`, Apache httpd's KeepAliveTimeout
(collect.server_conf), all read as model.servers.ServerTimeouts
(Context.server_timeouts) and matched by the listener's owner pid and port.
"""

from __future__ import annotations

from halfopen.records import record

from ..model.servers import ServerTimeouts
from ..model.socket import Socket
from .common import owner
from .context import Context

WILDCARDS = ("0.0.0.0", "::")
# the process names whose configuration halfopen reads (collect.nginx_conf, server_conf)
READ_COMMS = {"nginx": "nginx", "haproxy": "haproxy", "redis-server": "redis",
              "apache2": "apache2", "httpd": "apache2"}
NAMES = {"apache2": "Apache"}  # how a title names a server kind


@record(frozen=True)
class LocalServer:
    """A service this host's client uses that listens on this host too."""

    service: str
    pid: int | None
    comm: str
    keepalive_timeout_s: float | None  # the server's idle timeout, when known
    source: str  # where the timeout was read ("FILE:LINE"), or why it is unknown
    timeouts: ServerTimeouts | None = None  # what its configuration says, when read

    def says(self) -> str:
        """'2s `timeout client` (haproxy)', '`KeepAlive Off` (Apache)', or ''."""
        t = self.timeouts
        if t is None or t.idle is None or self.keepalive_timeout_s is None:
            return ""
        kind = NAMES.get(t.kind, t.kind)
        if t.idle.seconds == 0:
            return f"`{t.idle.text()}` ({kind})"
        return f"{timeout_text(t.idle.seconds or 0)} `{t.idle.name}` ({kind})"


def timeout_text(s: float) -> str:
    """A configured timeout: '2s', '0.5s', '75s', '5m'.

    >>> timeout_text(2.0), timeout_text(0.5), timeout_text(300)
    ('2s', '0.5s', '5m')
    """
    if s >= 120 and s % 60 == 0:
        return f"{s / 60:g}m"
    return f"{s:g}s"


def local_servers(ctx: Context, netns: str, wanted: dict[str, tuple[str, int]]
                  ) -> dict[str, LocalServer]:
    """The services (service -> (address, port)) that listen in the same namespace.

    A wildcard listener serves the peer's address when that address is loopback or
    is the local address of some socket in the namespace (an address of this host).
    """
    listeners: dict[tuple[str, int], Socket] = {}
    for s in ctx.table.listeners:
        if s.netns == netns:
            listeners.setdefault((s.local_addr, s.local_port), s)
    if not listeners:
        return {}
    space = ctx.table.spaces.get(netns)
    found = {}
    for svc, (addr, port) in wanted.items():
        lst = listeners.get((addr, port))
        if lst is None:
            for wild in WILDCARDS:
                lst = lst or listeners.get((wild, port))
            if lst is not None and not _is_loopback(addr) \
                    and (space is None or addr not in space.local_addrs):
                lst = None  # a wildcard listener, but not on an address of this host
        if lst is not None:
            found[svc] = _server(ctx, svc, lst)
    return found


def _is_loopback(addr: str) -> bool:
    return addr.startswith(("127.", "::ffff:127.")) or addr == "::1"


def _server(ctx: Context, svc: str, lst: Socket) -> LocalServer:
    who = owner(lst)
    pid, comm = who if who else (None, "")
    port = lst.local_port
    known = ctx.server_timeouts()
    if comm == "nginx" and pid is not None and ctx.nginx is not None:
        for t in known:  # a worker started after the read: nginx's pids are not all known
            if t.kind == "nginx" and pid not in t.pids:
                t.pids.append(pid)
    mine = [t for t in known if pid is not None and pid in t.pids]
    for t in mine:
        if t.serves(pid, port):
            src = t.idle.where if t.idle is not None else (t.config or t.kind)
            return LocalServer(svc, pid, comm, t.idle_timeout_s, src, t)
    if mine:
        ports = sorted({p for t in mine for p in t.ports})
        return LocalServer(svc, pid, comm, None, f"{mine[0].kind}'s configuration read "
                           f"({mine[0].config}) names port {', '.join(map(str, ports))}, not "
                           f"{port}: not this server's")
    if comm == "nginx":
        return LocalServer(svc, pid, comm, None, ctx.nginx_note or "nginx configuration not read")
    if comm in READ_COMMS:
        return LocalServer(svc, pid, comm, None, f"{READ_COMMS[comm]}'s configuration was not "
                           "read (see the notes)")
    return LocalServer(svc, pid, comm, None, f"{comm or 'the server'}'s idle timeout is not "
                                             "known to halfopen")
