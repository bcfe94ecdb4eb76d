"""One pass over the socket table: what every rule reads, without keeping the sockets.

`Tally.add(sock)` is called once per socket while the sock_diag dump streams
(collect.take.take's sink), or over a loaded snapshot's list: the rules
have one code path either way. It keeps, per group, the figures the findings
quote (counts, ages, the top peers and ports, the first socket's side) and
lets each Socket go; only listeners are kept whole (a few per namespace).

Groups and their keys, in first-seen order (the order a dict of lists fed the
same sockets would have, so findings and their ties come out as before):

- close-wait-leak: CLOSE_WAIT by owner (netns, pid, comm), then side -> Pile
- dead-peer / keepalive-off: the ESTABLISHED sockets their predicates pick
  (Marks), by owner, then side -> Hits
- syn-flood: SYN_RECV by (netns, local port) -> SynGroup
- orphan-pressure: unowned FIN_WAIT2 (and the other orphan states) per netns
- time-wait-pressure: per netns and destination -> Dest (local port, state
  and owner of each socket to it, 7 bytes a socket: a destination holds at
  most one socket per local port)
- per netns: sockets by state, owner pids, local addresses; the five largest
  Send-Q; idle sockets without keepalive past each --middlebox timeout.

The counters are bounded (diagnose.bounded); past a bound a figure is a lower
bound and notes() says which.
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from halfopen.records import record

from ..model.socket import INBOUND, OUTBOUND, Socket
from ..model.states import TcpState, state_name
from . import bounded, sides
from .bounded import Capped, Distinct, Keys
from .common import is_local_peer, owner

TIMER_OFF, TIMER_ON, TIMER_KEEPALIVE = 0, 1, 2  # idiag_timer (model.socket TIMER_NAMES)
ESTABLISHED = int(TcpState.ESTABLISHED)
CLOSE_WAIT = int(TcpState.CLOSE_WAIT)
FIN_WAIT2 = int(TcpState.FIN_WAIT2)
LISTEN = int(TcpState.LISTEN)
SYN_RECV_STATES = (int(TcpState.SYN_RECV), int(TcpState.NEW_SYN_RECV))
# the states an orphan (no owner) is counted in, in orphan-pressure's order:
# FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING
ORPHAN_STATES = (int(TcpState.FIN_WAIT1), FIN_WAIT2, int(TcpState.LAST_ACK),
                 int(TcpState.CLOSING))
TOP_SEND_Q = 5
LISTENERS = bounded.DISTINCT  # listeners kept per tally

OwnerKey = tuple[str, "int | None", str]  # (netns, pid, comm); pid None: no owner


def owner_key(s: Socket) -> OwnerKey:
    """by_owner's key (common.by_owner): the lowest-pid owner, or none."""
    who = owner(s)
    return (s.netns, who[0], who[1]) if who else (s.netns, None, "")


def idle_ms(s: Socket) -> int | None:
    """Milliseconds since anything moved on the socket (tcp_info), or None without it."""
    ti = s.tcp_info
    if ti is None:
        return None
    return min(ti.last_data_recv, ti.last_data_sent, ti.last_ack_recv)


def _never(_s: Socket) -> bool:
    return False


@record(frozen=True)
class Marks:
    """The thresholds that decide which group a socket counts in (from the doctor's
    options: --min-age, --middlebox); report.marks() builds them from the rules."""

    stuck_age_s: float = 30.0  # close-wait: older is stuck, younger not yet judged
    dead_peer: Callable[[Socket], bool] = _never  # a remote ESTABLISHED socket
    keepalive_off: Callable[[Socket], bool] = _never  # a remote ESTABLISHED socket
    flow_idle_s: tuple[float, ...] = ()  # FLOW middleboxes' idle timeouts


NO_MARKS = Marks()  # the defaults: enough for counts per state (perfdata)


class Pile:
    """One process's CLOSE_WAIT sockets on one side: the stuck (old or undated) and
    the young ones. Counters over the stuck ones, the young ones' where/ports."""

    __slots__ = ("count", "direction", "stuck", "stuck_direction", "undated", "lows", "high",
                 "unread", "peers", "ports", "dests", "wanted", "rport", "young",
                 "young_max", "where", "young_service", "young_rport", "young_lport")

    def __init__(self) -> None:
        self.count = 0
        self.direction: str | None = None
        self.stuck = 0
        self.stuck_direction: str | None = None
        self.undated = 0
        # every dated stuck socket's age lower bound: the median needs them all
        # (8 bytes a socket, a float array, not a list of objects)
        self.lows = array("d")
        self.high = 0.0
        self.unread = 0
        self.peers = Keys()  # server side: peer address
        self.ports = Keys()  # server side: local port
        self.dests = Keys()  # client side: remote service ip:port
        self.wanted: dict[str, tuple[str, int]] = {}  # service -> (addr, port), as dests
        self.rport = Distinct()  # client side: remote port
        self.young = 0
        self.young_max = 0.0
        self.where = Keys()  # young: service (client) or local port (server)
        self.young_service = Distinct()
        self.young_rport = Distinct()
        self.young_lport = Distinct()

    def add(self, s: Socket, client: bool, stuck_age: float) -> None:
        self.count += 1
        if self.count == 1:
            self.direction = s.direction
        ages = s.fin_age_s
        if ages is None or ages[0] >= stuck_age:
            if self.stuck == 0:
                self.stuck_direction = s.direction
            self.stuck += 1
            if ages is None:
                self.undated += 1  # no tcp_info: counted, age unknown
            else:
                self.lows.append(ages[0])
                if len(self.lows) == 1 or ages[1] > self.high:
                    self.high = ages[1]
            if s.recv_q >= 1:
                self.unread += 1
            if client:
                svc = sides.service(s)
                self.dests.add(svc)
                if svc in self.dests.counts and svc not in self.wanted:
                    self.wanted[svc] = (s.peer_addr, s.peer_port)
                self.rport.add(s.peer_port)
            else:
                self.peers.add(s.peer_addr)
                self.ports.add(s.local_port)
            return
        if self.young == 0 or ages[0] > self.young_max:
            self.young_max = ages[0]
        self.young += 1
        if client:
            svc = sides.service(s)
            self.where.add(svc)
            self.young_service.add(svc)
            self.young_rport.add(s.peer_port)
        else:
            self.where.add(s.local_port)
            self.young_lport.add(s.local_port)

    @property
    def oldest(self) -> float | None:
        return max(self.lows) if self.lows else None

    def overflowed(self) -> bool:
        return any(k.overflowed for k in (self.peers, self.ports, self.dests, self.where))


class Hits:
    """One process's dead-peer or keepalive-off sockets on one side."""

    __slots__ = ("count", "direction", "inbound", "retrans", "probing", "infos",
                 "max_retransmits", "max_ack_ms", "max_idle_s", "unacked", "peers", "ports",
                 "port")

    def __init__(self) -> None:
        self.count = 0
        self.direction: str | None = None
        self.inbound = True  # every socket INBOUND
        self.retrans = 0  # timer on (retransmitting)
        self.probing = 0  # keepalive timer
        self.infos = 0  # with tcp_info
        self.max_retransmits = 0
        self.max_ack_ms = 0
        self.max_idle_s = 0.0
        self.unacked = 0
        self.peers = Keys()  # remote service (client) or peer address (server)
        self.ports = Keys()  # local port
        self.port = Distinct()  # remote port (client) or local port (server)

    def add(self, s: Socket, client: bool) -> None:
        self.count += 1
        if self.count == 1:
            self.direction = s.direction
        if s.direction != INBOUND:
            self.inbound = False
        if s.timer == TIMER_ON:
            self.retrans += 1
        elif s.timer == TIMER_KEEPALIVE:
            self.probing += 1
        ti = s.tcp_info
        if ti is not None:
            if self.infos == 0 or ti.retransmits > self.max_retransmits:
                self.max_retransmits = ti.retransmits
            if self.infos == 0 or ti.last_ack_recv > self.max_ack_ms:
                self.max_ack_ms = ti.last_ack_recv
            self.infos += 1
        idle = (idle_ms(s) or 0) / 1000
        if self.count == 1 or idle > self.max_idle_s:
            self.max_idle_s = idle
        self.unacked += s.send_q
        self.peers.add(sides.service(s) if client else s.peer_addr)
        self.ports.add(s.local_port)
        self.port.add(s.peer_port if client else s.local_port)

    def overflowed(self) -> bool:
        return self.peers.overflowed or self.ports.overflowed


class Sided:
    """One owner's groups: the total over both sides and a group per side."""

    __slots__ = ("total", "server", "client")

    def __init__(self) -> None:
        self.total = 0
        self.server: Any = None  # a Pile or Hits, as the group's kind
        self.client: Any = None

    def sides(self) -> list[tuple[str, Any]]:
        """(side, group), the server's first, as sides.split orders them."""
        return [(k, g) for k, g in ((sides.SERVER, self.server), (sides.CLIENT, self.client))
                if g is not None]


class SynGroup:
    """The SYN_RECV sockets to one port; len() is their number."""

    __slots__ = ("count", "sources")

    def __init__(self) -> None:
        self.count = 0
        self.sources = Keys(bounded.DISTINCT)  # peer address

    def __len__(self) -> int:
        return self.count


class Dest:
    """The sockets of one namespace to one (local address, peer address, peer port)."""

    __slots__ = ("ports", "states", "owners")

    def __init__(self) -> None:
        self.ports = array("H")  # local port
        self.states = array("B")  # TcpState
        self.owners = array("I")  # Tally.owner_ids index; 0: no owner


class Space:
    """One namespace's figures."""

    __slots__ = ("states", "cw_pids", "local_addrs", "pids", "listening", "dests",
                 "dests_overflowed", "orphans", "fw2_peers", "flow_idle")

    def __init__(self, marks: int) -> None:
        self.states: Counter = Counter()  # TcpState -> sockets
        self.cw_pids = Keys()  # CLOSE_WAIT by its first owner's pid (perfdata)
        self.local_addrs = Capped()  # every local address (addresses of this host)
        self.pids = Capped()  # every owner's pid
        self.listening: set[int] = set()  # listening ports
        self.dests: dict[tuple[str, str, int], Dest] = {}
        self.dests_overflowed = False
        self.orphans: Counter = Counter()  # unowned sockets in ORPHAN_STATES, by state
        self.fw2_peers = Keys()  # unowned FIN_WAIT2 by peer address
        self.flow_idle = [0] * marks  # ESTABLISHED, timer off, idle past each flow mark


class Tally:
    """The rules' view of a socket table, built one socket at a time."""

    def __init__(self, marks: Marks = NO_MARKS) -> None:
        self.marks = marks
        self.count = 0
        self.spaces: dict[str, Space] = {}
        self.close_wait: dict[OwnerKey, Sided] = {}
        self.dead_peer: dict[OwnerKey, Sided] = {}
        self.keepalive_off: dict[OwnerKey, Sided] = {}
        self.listeners: list[Socket] = []
        self.listeners_overflowed = False
        self.syn_recv: dict[tuple[str, int], SynGroup] = {}
        self.pids: set[int] = set()
        self.owner_ids: dict[tuple[int, str] | None, int] = {None: 0}
        self._send_q: list[tuple[int, int, str]] = []  # min-heap (send_q, -seq, label)
        self._flow_ms = tuple(t * 1000 for t in marks.flow_idle_s)

    @classmethod
    def of(cls, socks: Iterable[Socket], marks: Marks = NO_MARKS) -> Tally:
        t = cls(marks)
        for s in socks:
            t.add(s)
        return t

    def add(self, s: Socket) -> None:
        self.count += 1
        space = self.spaces.get(s.netns)
        if space is None:
            space = self.spaces[s.netns] = Space(len(self._flow_ms))
        state = s.state
        space.states[state] += 1
        space.local_addrs.add(s.local_addr)
        owners = s.owners
        for o in owners or ():
            self.pids.add(o.pid)
            space.pids.add(o.pid)
        if s.send_q > 0:
            self._top_send_q(s)
        if state == LISTEN:
            space.listening.add(s.local_port)
            if len(self.listeners) < LISTENERS:
                self.listeners.append(s)
            else:
                self.listeners_overflowed = True
            return
        self._dest(space, s)
        if state == CLOSE_WAIT:
            if owners:
                space.cw_pids.add(owners[0].pid)
            self._sided(self.close_wait, s, Pile).add(
                s, s.direction == OUTBOUND, self.marks.stuck_age_s)
        elif state == ESTABLISHED:
            self._established(space, s)
        elif state in SYN_RECV_STATES:
            g = self.syn_recv.get((s.netns, s.local_port))
            if g is None:
                g = self.syn_recv[(s.netns, s.local_port)] = SynGroup()
            g.count += 1
            g.sources.add(s.peer_addr)
        if not owners and state in ORPHAN_STATES:
            space.orphans[state] += 1
            if state == FIN_WAIT2:
                space.fw2_peers.add(s.peer_addr)

    # ---------------------------------------------------------------- the groups

    @staticmethod
    def _sided(groups: dict, s: Socket, kind: type):
        key = owner_key(s)
        sided = groups.get(key)
        if sided is None:
            sided = groups[key] = Sided()
        sided.total += 1
        if s.direction == OUTBOUND:
            if sided.client is None:
                sided.client = kind()
            return sided.client
        if sided.server is None:
            sided.server = kind()
        return sided.server

    def _established(self, space: Space, s: Socket) -> None:
        if self._flow_ms and s.timer == TIMER_OFF and s.tcp_info is not None:
            idle = min(s.tcp_info.last_data_recv, s.tcp_info.last_data_sent)
            for i, mark in enumerate(self._flow_ms):
                if idle >= mark:
                    space.flow_idle[i] += 1
        if is_local_peer(s):
            return  # the peer is on this host: it cannot vanish unseen
        client = s.direction == OUTBOUND
        if self.marks.dead_peer(s):
            self._sided(self.dead_peer, s, Hits).add(s, client)
        if self.marks.keepalive_off(s):
            self._sided(self.keepalive_off, s, Hits).add(s, client)

    def _dest(self, space: Space, s: Socket) -> None:
        """time-wait-pressure's destinations: a socket on a port known to listen is
        left out now; the ephemeral range and later listeners are applied by dest_groups."""
        if s.local_port in space.listening:
            return
        key = (s.local_addr, s.peer_addr, s.peer_port)
        d = space.dests.get(key)
        if d is None:
            if len(space.dests) >= bounded.DESTINATIONS:
                space.dests_overflowed = True
                return
            d = space.dests[key] = Dest()
        who = owner(s)
        oid = self.owner_ids.get(who)
        if oid is None:
            oid = self.owner_ids[who] = len(self.owner_ids)
        d.ports.append(s.local_port)
        d.states.append(s.state)
        d.owners.append(oid)

    def _top_send_q(self, s: Socket) -> None:
        heap = self._send_q
        if len(heap) == TOP_SEND_Q and (s.send_q, -self.count) < heap[0][:2]:
            return
        item = (s.send_q, -self.count, f"{s.local_port}->{s.peer_addr}:{s.peer_port}")
        if len(heap) < TOP_SEND_Q:
            heapq.heappush(heap, item)
        else:
            heapq.heapreplace(heap, item)

    # ---------------------------------------------------------------- what the rules read

    def largest_send_q(self) -> list[list]:
        """[[label, send_q], ...], largest first (ties: the first socket seen)."""
        return [[label, q] for q, _seq, label in sorted(self._send_q, reverse=True)]

    def flow_mark(self, idle_timeout_s: float) -> int:
        """The index in Space.flow_idle of a FLOW middlebox's idle timeout (Marks)."""
        return self.marks.flow_idle_s.index(idle_timeout_s)

    def by_size(self, groups: dict[OwnerKey, Sided]) -> list[tuple[OwnerKey, Sided]]:
        """Owners by their sockets, most first (ties: first seen)."""
        return sorted(groups.items(), key=lambda kv: -kv[1].total)

    def dest_groups(self, netns: str, lo: int, hi: int, at_least: float = 0
                    ) -> list[tuple[tuple[str, str, int], int, Counter, Counter]]:
        """time-wait-pressure's groups in `netns`: (destination, sockets, states by name,
        owners) of the sockets on a local port in [lo, hi] that is not a listening port;
        only the destinations with at least `at_least` such sockets."""
        space = self.spaces.get(netns)
        if space is None:
            return []
        who = {i: o for o, i in self.owner_ids.items()}
        out = []
        for key, d in space.dests.items():
            listening = space.listening
            keep = [i for i, p in enumerate(d.ports) if lo <= p <= hi and p not in listening]
            if not keep or len(keep) < at_least:
                continue
            states: Counter = Counter()
            owners: Counter = Counter()
            for i in keep:
                states[state_name(d.states[i])] += 1
                o = who[d.owners[i]]
                if o:
                    owners[o] += 1
            out.append((key, len(keep), states, owners))
        return out

    def notes(self) -> list[str]:
        """One line per bound a figure went past (the figure is then a lower bound)."""
        out = []
        if self.listeners_overflowed:
            out.append(f"more than {LISTENERS:,} listeners: the rest were not checked")
        for netns, space in self.spaces.items():
            if space.dests_overflowed:
                out.append(f"netns {netns}: more than {bounded.DESTINATIONS:,} destinations; "
                           "time-wait-pressure checked the first ones only")
            if space.local_addrs.overflowed or space.pids.overflowed or space.cw_pids.overflowed \
                    or space.fw2_peers.overflowed:
                out.append(f"netns {netns}: more than {bounded.DISTINCT:,} local addresses or "
                           f"{bounded.KEYS_PER_GROUP:,} processes or peers: counts per "
                           "address/process are lower bounds")
        for rid, groups in (("close-wait-leak", self.close_wait), ("dead-peer", self.dead_peer),
                            ("keepalive-off", self.keepalive_off)):
            if any(g.overflowed() for sided in groups.values() for _side, g in sided.sides()):
                out.append(f"{rid}: more than {bounded.KEYS_PER_GROUP:,} peers, ports or "
                           "services in one process: the top ones and their number are lower "
                           "bounds")
        if any(g.sources.overflowed for g in self.syn_recv.values()):
            out.append(f"syn-flood: more than {bounded.DISTINCT:,} sources to one port: "
                       "distinct_sources is a lower bound")
        return out
