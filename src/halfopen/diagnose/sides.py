"""Which side of its connections this host is, and the server at the other end.

Socket.direction (collect.direction) decides: "in", the connection was
accepted by a listener here, so this host is the server and the peer a
client; "out", this host connected out, so it is the client and the peer's
address and port are the service it uses. None (a saved snapshot from before
direction was recorded) is treated as before: the server's side.

The server at the other end, when it is on this host too: diagnose.local_servers.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..model.socket import OUTBOUND, Socket

SERVER, CLIENT = "server", "client"


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


def dst_filter(peers: list[str], limit: int = 5) -> str:
    """'dst A or dst B' for up to `limit` peers, '' beyond (the caller says so).

    A peer is a service ('10.0.0.1:80', '[::1]:443') or a bare address; a bare
    IPv6 address is bracketed, since in the filter (as in ss) the part after the
    last ':' is a port.

    >>> dst_filter(["10.0.0.9", "2001:db8::5", "[::1]:443"])
    'dst 10.0.0.9 or dst [2001:db8::5] or dst [::1]:443'
    """
    if not peers or len(peers) > limit:
        return ""
    return " or ".join(f"dst [{p}]" if p.count(":") > 1 and not p.startswith("[") else f"dst {p}"
                       for p in peers)
