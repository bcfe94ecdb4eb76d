"""The keepalive a cure proposes: computed from the limit it must beat and what
the sockets already do, in one place (timeout-mismatch, dead-peer and
keepalive-off all ask here).

A keepalive finds a dead peer `idle + interval x count` seconds after the
connection went quiet: tcp_keepalive_timer (net/ipv4/tcp_timer.c) sends the
first probe after TCP_KEEPIDLE, one every TCP_KEEPINTVL after that, and resets
the connection when icsk_probes_out reaches TCP_KEEPCNT. A flow middlebox (NAT,
firewall, L4 load balancer, conntrack) forgets a flow idle for its idle
timeout; every answered probe refreshes the flow. The cure must therefore
have its first probe, and its whole probing, strictly inside the limit:
`idle + interval x count < limit`, so the flow is refreshed while it exists
and a peer that is gone is found before the middlebox would have dropped the
flow anyway. Without a limit the cure is the usual 60 s / 10 s x 6.

It is never slower than what the sockets already have: a socket that already
finds a dead peer sooner (redis's `tcp-keepalive 15`: 15 s / 5 s x 3 = 30 s)
gets no proposal at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Optional

from halfopen.records import record

from ..model.sysctls import default_numbers

# socket(7)/tcp(7) bounds: MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT
# (include/net/tcp.h)
MAX_IDLE = 32767
MAX_INTERVAL = 32767
MAX_COUNT = 127

MARGIN = 0.8  # probing ends by 80 % of the limit: timers fire late under load
DEFAULT_IDLE_S, DEFAULT_INTERVAL_S, DEFAULT_COUNT = 60, 10, 6  # no limit known
MIN_COUNT_WANTED = 3  # one lost probe must not end a live connection


@record(frozen=True)
class Probing:
    """One socket's (or the host's default) keepalive timing, in seconds."""

    idle: int  # TCP_KEEPIDLE / net.ipv4.tcp_keepalive_time
    interval: int  # TCP_KEEPINTVL / net.ipv4.tcp_keepalive_intvl
    count: int  # TCP_KEEPCNT / net.ipv4.tcp_keepalive_probes

    @property
    def detect_s(self) -> int:
        """Seconds from the last packet to the reset of a dead peer's connection.

        >>> Probing(15, 5, 3).detect_s, Probing(7200, 75, 9).detect_s
        (30, 7875)
        """
        return self.idle + self.interval * self.count

    def text(self) -> str:
        """'60s/10s x6'"""
        return f"{self.idle}s/{self.interval}s x{self.count}"


DEFAULT = Probing(DEFAULT_IDLE_S, DEFAULT_INTERVAL_S, DEFAULT_COUNT)
# the namespace's sysctls behind a socket that set nothing, each Probing field's
PROBING_SYSCTLS = (("idle", "net.ipv4.tcp_keepalive_time"),
                   ("interval", "net.ipv4.tcp_keepalive_intvl"),
                   ("count", "net.ipv4.tcp_keepalive_probes"))


def host_default(tunables: Any) -> Probing:
    """The keepalive of a socket that set nothing: the namespace's tcp_keepalive_*
    sysctls (model.host.Tunables), the kernel's defaults where one was not read.

    >>> host_default(None)
    Probing(idle=7200, interval=75, count=9)
    """
    def value(key: str) -> int:
        got = getattr(tunables, key.rsplit(".", 1)[1], None) if tunables is not None else None
        return got if got is not None else default_numbers(key)[0]
    return Probing(*(value(key) for _field, key in PROBING_SYSCTLS))


def budget_s(limit_s: float) -> int:
    """Whole seconds the probing may take to end strictly inside `limit_s`.

    >>> budget_s(8), budget_s(350), budget_s(2.5), budget_s(1)
    (6, 280, 2, 0)
    """
    # math.ceil(limit_s) - 1: the largest whole number below the limit
    return max(0, min(int(limit_s * MARGIN), math.ceil(limit_s) - 1))


def within(limit_s: float) -> Optional[Probing]:
    """The slowest sensible probing that ends strictly inside `limit_s`; None when no
    keepalive can (a limit of 2 s or less: TCP_KEEPIDLE and TCP_KEEPINTVL are whole
    seconds, at least 1 each).

    >>> within(8), within(350)
    (Probing(idle=3, interval=1, count=3), Probing(idle=220, interval=10, count=6))
    >>> within(2) is None, within(3)
    (True, Probing(idle=1, interval=1, count=1))
    """
    budget = budget_s(limit_s)
    if budget < 2:
        return None
    if budget >= 30:
        count = DEFAULT_COUNT
    else:
        count = max(1, min(MIN_COUNT_WANTED, budget - 1))
    # the probes take about a quarter of the budget, at most the usual 10 s apart
    interval = max(1, min(DEFAULT_INTERVAL_S, budget // (4 * count)))
    idle = min(MAX_IDLE, budget - interval * count)
    return Probing(idle, interval, count)


def wanted(limit_s: Optional[float], current: Optional[Probing] = None) -> Optional[Probing]:
    """What to set, or None when nothing should change: the sockets already probe
    fast enough (`current` finds a dead peer no later than the cure would, and
    inside the limit), or no keepalive can beat the limit.

    >>> wanted(None), wanted(None, Probing(15, 5, 3)) is None
    (Probing(idle=60, interval=10, count=6), True)
    >>> wanted(8, Probing(15, 5, 3)), wanted(8, Probing(3, 1, 2)) is None
    (Probing(idle=3, interval=1, count=3), True)
    >>> wanted(350, Probing(200, 75, 9))
    Probing(idle=200, interval=10, count=6)
    """
    target = DEFAULT if limit_s is None else within(limit_s)
    if target is None:
        return None
    if current is None:
        return target
    if current.detect_s <= target.detect_s:
        return None  # target.detect_s < limit_s: so is current's
    # each field no slower than the socket's own: a shorter idle, interval or
    # count it already has stays
    return Probing(min(target.idle, current.idle), min(target.interval, current.interval),
                   min(target.count, current.count))


@record(frozen=True)
class SocketsProbing:
    """What the sockets read of a process (or a namespace) do, against the host's default."""

    read: int  # sockets read
    off: int  # without SO_KEEPALIVE: no probe at all
    own: int  # probing with values of their own (set by the process)
    default: int  # probing with the namespace's sysctls
    fastest: Optional[Probing]  # each field's smallest over the probing sockets
    slowest: Optional[Probing]  # the probing socket that finds a dead peer last
    own_example: Optional[Probing]  # the most common setting of the process's own

    def text(self, host: Probing) -> str:
        """'of 8 sockets read: 6 probe 30s/5s x3 (set by the process), 2 use the host's
        7200s/75s x9'"""
        parts = []
        if self.own:
            example = self.own_example.text() if self.own_example else ""
            parts.append(f"{self.own} probe {example} (set by the process)")
        if self.default:
            parts.append(f"{self.default} use the host's {host.text()}")
        if self.off:
            parts.append(f"{self.off} without SO_KEEPALIVE")
        return f"of {self.read} sockets read: " + ", ".join(parts)


def summarize(seen: Iterable[Any], host: Probing) -> Optional[SocketsProbing]:
    """Fold KeepaliveSeen entries (model.process; most common first); None when none.

    >>> from halfopen.model.process import KeepaliveSeen as K
    >>> s = summarize([K(6, True, 30, 5, 3), K(2, True, 7200, 75, 9), K(1, False, 7200, 75, 9)],
    ...               Probing(7200, 75, 9))
    >>> s.own, s.default, s.off, s.fastest, s.slowest.detect_s
    (6, 2, 1, Probing(idle=30, interval=5, count=3), 7875)
    """
    read = off = own = default = 0
    probing: list[Probing] = []
    own_example = None
    for k in seen:
        read += k.sockets
        if not k.keepalive:
            off += k.sockets
            continue
        p = Probing(k.idle, k.interval, k.count)
        probing.append(p)
        if p == host:
            default += k.sockets
        else:
            own += k.sockets
            own_example = own_example or p
    if not read:
        return None
    fastest = Probing(min(p.idle for p in probing), min(p.interval for p in probing),
                      min(p.count for p in probing)) if probing else None
    slowest = max(probing, key=lambda p: p.detect_s) if probing else None
    return SocketsProbing(read, off, own, default, fastest, slowest, own_example)
