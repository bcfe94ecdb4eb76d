"""The server at the other end of a client's connections, when it listens on this host too.

Its idle timeout may then be known: nginx's keepalive_timeout from its
configuration (collect.nginx_conf reads the running master's files).
"""

from __future__ import annotations

from halfopen.records import record

from ..model.socket import Socket
from .common import owner
from .context import Context

WILDCARDS = ("0.0.0.0", "::")


@record(frozen=True)
class LocalServer:
    """A service this host's client uses that listens on this host too."""

    service: str
    pid: int | None
    comm: str
    keepalive_timeout_s: float | None  # the server's idle timeout, when known
    source: str  # where the timeout was read ("nginx configuration"), or why it is unknown


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
    nginx = ctx.nginx
    if comm == "nginx" or (nginx is not None and pid in nginx.pids):
        if nginx is not None:
            src = "nginx configuration" if nginx.keepalive_timeouts else "nginx default (no keepalive_timeout)"
            return LocalServer(svc, pid, comm, nginx.min_keepalive_timeout_s, src)
        return LocalServer(svc, pid, comm, None, ctx.nginx_note or "nginx configuration not read")
    return LocalServer(svc, pid, comm, None, f"{comm or 'the server'}'s idle timeout is not "
                                             "known to halfopen")
