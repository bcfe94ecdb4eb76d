"""Fixtures for tests/sockets: a namespace full of real sockets in every state.

The `zoo` is built once per module (TIME_WAIT lasts 60 s, so a module must
finish well inside that) in its own network namespace, by two helper
processes ("ho-srv" and "ho-cli"), so owners are other pids and the namespace
holds our sockets and nothing else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from sockets_support import (  # noqa: E402
    LOCAL4, LOCAL6, UNANSWERED4, UNANSWERED6, Puppet, make_netns, remove_netns, wait_for,
)

from halfopen.collect import netns as netns_mod  # noqa: E402
from halfopen.collect import sockets as collector  # noqa: E402


@dataclass
class Expected:
    """One socket the zoo made: the 4-tuple, state and what should hang off it."""

    family: int
    state: str
    local_addr: str
    local_port: int
    peer_addr: str
    peer_port: int
    owner: str | None  # "ho-srv", "ho-cli" or None (no fd: orphan or mini socket)
    recv_q: int | None = None  # None: not checked (e.g. listener backlog)
    timer: str | None = None

    @property
    def key(self) -> tuple:
        return (self.local_addr, self.local_port, self.peer_addr, self.peer_port)


@dataclass
class Zoo:
    netns: str
    srv: Puppet
    cli: Puppet
    expected: list[Expected] = field(default_factory=list)
    listen_port: dict[int, int] = field(default_factory=dict)

    def by_key(self) -> dict[tuple, Expected]:
        return {e.key: e for e in self.expected}

    def dump(self, **query) -> list:
        """The namespace's sockets through the Python API."""
        q = collector.Query(namespaces=(netns_mod.named(self.netns),), **query)
        return list(collector.collect(q).sockets)


def _build(zoo: Zoo, family: int, local: str, unanswered: str) -> None:
    srv, cli, E = zoo.srv, zoo.cli, zoo.expected
    lfd, lport = srv.ints("listen", local, 16)
    zoo.listen_port[family] = lport
    any_addr = "0.0.0.0" if family == 4 else "::"
    # ESTABLISHED both ways, with unread data on each side and a keepalive timer
    c1, cp1 = cli.ints("connect", local, lport)
    a1, _ = srv.ints("accept", lfd)
    cli.do("send", c1, 100)
    srv.do("send", a1, 50)
    cli.do("keepalive", c1)
    E.append(Expected(family, "established", local, cp1, local, lport, "ho-cli", 50, "keepalive"))
    E.append(Expected(family, "established", local, lport, local, cp1, "ho-srv", 100))
    # CLOSE_WAIT held by the server (7 bytes + FIN unread), FIN_WAIT2 held by the client
    c2, cp2 = cli.ints("connect", local, lport)
    srv.ints("accept", lfd)
    cli.do("send", c2, 7)
    cli.do("shut", c2)
    # Recv-Q counts the FIN too (rcv_nxt - copied_seq): 7 bytes + 1
    E.append(Expected(family, "close_wait", local, lport, local, cp2, "ho-srv", 8))
    E.append(Expected(family, "fin_wait2", local, cp2, local, lport, "ho-cli", 0))
    # TIME_WAIT: the client closes first, then the server
    c3, cp3 = cli.ints("connect", local, lport)
    a3, _ = srv.ints("accept", lfd)
    cli.do("close", c3)
    srv.do("close", a3)
    E.append(Expected(family, "time_wait", local, cp3, local, lport, None, 0, "timewait"))
    # a connection left in the accept queue: listener Recv-Q 1, server side has no fd
    _c4, cp4 = cli.ints("connect", local, lport)
    E.append(Expected(family, "established", local, cp4, local, lport, "ho-cli", 0))
    E.append(Expected(family, "established", local, lport, local, cp4, None, 0))
    E.append(Expected(family, "listen", local, lport, any_addr, 0, "ho-srv", 1))
    # SYN_SENT: to an on-link address on the dummy interface, which drops the SYN
    _c5, cp5 = cli.ints("connect", unanswered, 9, "nb")
    E.append(Expected(family, "syn_sent", local, cp5, unanswered, 9, "ho-cli", 0, "on"))
    # SYN_RECV: a bare SYN "from" the unanswered address; our SYN-ACK goes nowhere
    (sport,) = cli.ints("rawsyn", unanswered, local, lport)
    E.append(Expected(family, "syn_recv", local, lport, unanswered, sport, None, 0, "on"))


def _unsettled(zoo: Zoo) -> list[str]:
    got = {(s.local_addr, s.local_port, s.peer_addr, s.peer_port): s.state_name
           for s in zoo.dump()}
    return [f"{e.key}: want {e.state}, have {got.get(e.key)}"
            for e in zoo.expected if got.get(e.key) != e.state]


@pytest.fixture(scope="module")
def zoo() -> Iterator[Zoo]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    name = make_netns()
    srv = cli = None
    try:
        srv = Puppet("ho-srv", name)
        cli = Puppet("ho-cli", name)
        z = Zoo(name, srv, cli)
        _build(z, 4, LOCAL4, UNANSWERED4)
        _build(z, 6, LOCAL6, UNANSWERED6)
        # a dual-stack client on an IPv4-mapped address, left in the v4 accept queue
        _c6, cp6 = cli.ints("connect", f"::ffff:{LOCAL4}", z.listen_port[4])
        z.expected.append(Expected(6, "established", f"::ffff:{LOCAL4}", cp6,
                                   f"::ffff:{LOCAL4}", z.listen_port[4], "ho-cli", 0))
        z.expected.append(Expected(4, "established", LOCAL4, z.listen_port[4], LOCAL4, cp6,
                                   None, 0))
        for e in z.expected:  # now two connections wait in the v4 accept queue
            if e.family == 4 and e.state == "listen":
                e.recv_q = 2
        try:
            wait_for("the zoo's sockets to reach their states", lambda: not _unsettled(z), 5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {_unsettled(z)}") from None
        yield z
    finally:
        for p in (cli, srv):
            if p is not None:
                p.stop()
        remove_netns(name)
