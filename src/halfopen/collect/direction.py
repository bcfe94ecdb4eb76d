"""Which way each connection goes: inbound (accepted here) or outbound (connected out).

A connection is inbound when its local port is a listening port of its
namespace, on the same local address or on the wildcard (0.0.0.0, ::), and
outbound otherwise. connect() never takes a listening port as its ephemeral
port: __inet_hash_connect (net/ipv4/inet_hashtables.c) skips every port whose
bind bucket was made by bind(), so the test does not misfile a client.

The listeners are read once per namespace and family before the dump: a
LISTEN-only sock_diag request walks only the listening hash (inet_diag_dump_icsk
stops before the established hash when the state mask is TCPF_LISTEN alone),
so it stays cheap at a million sockets, and it works whatever the query's
filter leaves out. /proc/net/tcp lists listeners first (tcp_get_idx:
listening_get_idx before established_get_idx), so the fallback reads up to
the first other state and rewinds.

    >>> from halfopen.model.socket import Socket
    >>> lst = Listening.of([Socket(4, 10, "0.0.0.0", 80, "0.0.0.0", 0, 0, 128, 0, 0, 0, 0, 1, 1)])
    >>> lst.direction(Socket(4, 1, "10.0.0.1", 80, "10.0.0.9", 40000, 0, 0, 0, 0, 0, 0, 2, 2))
    'in'
    >>> lst.direction(Socket(4, 1, "10.0.0.1", 40001, "10.0.0.9", 5432, 0, 0, 0, 0, 0, 0, 3, 3))
    'out'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from typing import IO

from halfopen.records import record

from ..model.socket import INBOUND, OUTBOUND, Socket
from ..model.states import TcpState
from .procfs_tcp import parse_address

LISTEN = int(TcpState.LISTEN)
LISTEN_MASK = 1 << LISTEN
WILDCARDS = frozenset(("0.0.0.0", "::"))
PROCFS_LISTEN = "0A"  # TCP_LISTEN as /proc/net/tcp prints the st column (%02X)


@record
class Listening:
    """The listening ports of one namespace: on every address, or on one."""

    ports: set[int] = field(default_factory=set)  # every listening port
    wild: set[int] = field(default_factory=set)  # ports listened on the wildcard
    bound: set[tuple[str, int]] = field(default_factory=set)  # (address, port)

    @classmethod
    def of(cls, listeners: Iterable[Socket]) -> Listening:
        lst = cls()
        for s in listeners:
            lst.add(s.local_addr, s.local_port)
        return lst

    def add(self, addr: str, port: int) -> None:
        self.ports.add(port)
        if addr in WILDCARDS:
            self.wild.add(port)
        else:
            self.bound.add((addr, port))

    def direction(self, sock: Socket) -> str | None:
        """INBOUND, OUTBOUND, or None for a listener."""
        if sock.state == LISTEN:
            return None
        port = sock.local_port
        if port not in self.ports:
            return OUTBOUND
        return INBOUND if port in self.wild or (sock.local_addr, port) in self.bound else OUTBOUND


def from_procfs(files: Iterable[tuple[int, IO[str]]]) -> Listening:
    """The LISTEN lines at the head of each /proc/net/tcp{,6} file; each file rewound."""
    lst = Listening()
    for _family, f in files:
        f.seek(0)
        next(f, None)  # header
        for line in f:
            fields = line.split(None, 4)
            if len(fields) < 4 or fields[3] != PROCFS_LISTEN:
                break
            lst.add(*parse_address(fields[1]))
        f.seek(0)
    return lst
