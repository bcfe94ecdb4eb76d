"""Which side of its connections this host is, and the server at the other end.

Socket.direction (collect.direction) decides: "in", the connection was
accepted by a listener here, so this host is the server and the peer a
client; "out", this host connected out, so it is the client and the peer's
address and port are the service it uses. None (a saved snapshot from before
direction was recorded) is treated as before: the server's side.

When the service is on this host too (its listener is in the snapshot), the
server's idle timeout may be known: nginx's keepalive_timeout from its configuration
(collect.nginx_conf reads the running master's files).
"""

from __future__ import annotations

from collections.abc import Iterable

from halfopen.records import record

from ..model.socket import OUTBOUND, Socket
from ..model.states import TcpState
from .common import owner
from .context import Context

SERVER, CLIENT = "server", "client"
LISTEN = int(TcpState.LISTEN)
WILDCARDS = ("0.0.0.0", "::")


def side(sock: Socket) -> str:
    return CLIENT if sock.direction == OUTBOUND else SERVER


def split(socks: Iterable[Socket]) -> list[tuple[str, list[Socket]]]:
    """The sockets by side, the server's first; sides with no socket left out."""
    by: dict[str, list[Socket]] = {SERVER: [], CLIENT: []}
    for s in socks:
        by[side(s)].append(s)
    return [(k, v) for k, v in by.items() if v]


def service(sock: Socket) -> str:
    """The peer as ip:port ('[::1]:443' for IPv6): the remote service of a client socket.

    >>> service(Socket(4, 8, "10.0.0.2", 40000, "10.0.0.1", 80, 0, 0, 0, 0, 0, 0, 1, 1))
    '10.0.0.1:80'
    """
    addr = sock.peer_addr
    return f"[{addr}]:{sock.peer_port}" if ":" in addr else f"{addr}:{sock.peer_port}"


def dst_filter(services: list[str], limit: int = 5) -> str:
    """'dst A or dst B' for up to `limit` services, '' beyond (the caller says so)."""
    if not services or len(services) > limit:
        return ""
    return " or ".join(f"dst {s}" for s in services)


@record(frozen=True)
class LocalServer:
    """A service this host's client uses that listens on this host too."""

    service: str
    pid: int | None
    comm: str
    keepalive_timeout_s: float | None  # the server's idle timeout, when known
    source: str  # where the timeout was read ("nginx configuration"), or why it is unknown


def local_servers(ctx: Context, netns: str, socks: Iterable[Socket]) -> dict[str, LocalServer]:
    """The services of these client sockets that listen in the same namespace.

    A wildcard listener serves the peer's address when that address is loopback or
    is the local address of some socket in the namespace (an address of this host).
    """
    wanted = {service(s): (s.peer_addr, s.peer_port) for s in socks}
    listeners: dict[tuple[str, int], Socket] = {}
    for s in ctx.in_state(LISTEN):
        if s.netns == netns:
            listeners.setdefault((s.local_addr, s.local_port), s)
    if not listeners:
        return {}
    local_addrs: set[str] | None = None
    found = {}
    for svc, (addr, port) in wanted.items():
        lst = listeners.get((addr, port))
        if lst is None:
            for wild in WILDCARDS:
                lst = lst or listeners.get((wild, port))
            if lst is not None and not _is_loopback(addr):
                if local_addrs is None:
                    local_addrs = {x.local_addr for x in ctx.snapshot.sockets if x.netns == netns}
                if addr not in local_addrs:
                    lst = None
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
