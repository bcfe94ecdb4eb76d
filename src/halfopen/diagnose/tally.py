"""One pass over the socket table: what every rule reads, without keeping the sockets.

`Tally.add(sock)` is called once per socket while the sock_diag dump streams
(collect.take.take's sink), or over a loaded snapshot's list: the rules
have one code path either way. It keeps, per group, the figures the findings
quote (counts, ages, the top peers and ports, the first socket's side) and
lets each Socket go; only listeners are kept whole (a few per namespace).

Groups and their keys, in first-seen order (the order a dict of lists fed the
same sockets would have, so findings and their ties come out as before):

- each rule's own state (RuleState): the rule module says which states it
  wants and what it keeps of each socket (close-wait-leak's piles per owner and
  side, dead-peer's and keepalive-off's hits, timeout-mismatch's idle flows);
  the tally hands each socket only to the rules that asked for its state
- syn-flood: SYN_RECV by (netns, local port) -> SynGroup
- orphan-pressure: unowned FIN_WAIT2 (and the other orphan states) per netns
- time-wait-pressure: per netns and destination -> Destination (local port, state
  and owner of each socket to it, 7 bytes a socket: a destination holds at
  most one socket per local port)
- per netns: sockets by state, owner pids, local addresses; the five largest
  Send-Q.

The counters are bounded (diagnose.bounded); past a bound a figure is a lower
bound and notes() says which.
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from ..model.socket import OUTBOUND, Socket
from ..model.states import TcpState, state_name
from . import bounded, sides
from .bounded import Capped, Keys
from .common import owner

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


class RuleState(Protocol):
    """What one rule keeps of the sockets as they stream (client_python's Collector,
    turned around): the states it wants, `add` for each socket in one of them, and a
    note per bound its figures went past. A rule module defines its own and the
    registry builds it from the doctor's options."""

    states: tuple[int, ...]

    def add(self, s: Socket) -> None: ...

    def notes(self) -> list[str]: ...


class BySide:
    """One owner's groups: the total over both sides and a group per side."""

    __slots__ = ("total", "server", "client")

    def __init__(self) -> None:
        self.total = 0
        self.server: Any = None  # a CloseWaitGroup or PeerGroup, as the group's kind
        self.client: Any = None

    def sides(self) -> list[tuple[str, Any]]:
        """(side, group), the server's first, as sides.split orders them."""
        return [(k, g) for k, g in ((sides.SERVER, self.server), (sides.CLIENT, self.client))
                if g is not None]


class OwnerGroups:
    """A rule's groups of sockets per owner (netns, pid, comm) and side, in first-seen
    order: close-wait-leak's, dead-peer's and keepalive-off's state is one of these."""

    def __init__(self) -> None:
        self.groups: dict[OwnerKey, BySide] = {}

    def group(self, s: Socket, kind: Callable[[], Any]) -> Any:
        """The group `s` counts in (made with kind() on first use), its owner's total counted."""
        key = owner_key(s)
        sided = self.groups.get(key)
        if sided is None:
            sided = self.groups[key] = BySide()
        sided.total += 1
        if s.direction == OUTBOUND:
            if sided.client is None:
                sided.client = kind()
            return sided.client
        if sided.server is None:
            sided.server = kind()
        return sided.server

    def by_size(self) -> list[tuple[OwnerKey, BySide]]:
        """Owners by their sockets, most first (ties: first seen)."""
        return sorted(self.groups.items(), key=lambda kv: -kv[1].total)

    def overflow_notes(self, rule_id: str) -> list[str]:
        if any(g.overflowed() for sided in self.groups.values() for _side, g in sided.sides()):
            return [f"{rule_id}: more than {bounded.KEYS_PER_GROUP:,} peers, ports or "
                    "services in one process: the top ones and their number are lower bounds"]
        return []


class SynGroup:
    """The SYN_RECV sockets to one port; len() is their number."""

    __slots__ = ("count", "sources")

    def __init__(self) -> None:
        self.count = 0
        self.sources = Keys(bounded.DISTINCT)  # peer address

    def __len__(self) -> int:
        return self.count


class Destination:
    """The sockets of one namespace to one (local address, peer address, peer port)."""

    __slots__ = ("ports", "states", "owners")

    def __init__(self) -> None:
        self.ports = array("H")  # local port
        self.states = array("B")  # TcpState
        self.owners = array("I")  # Tally.owner_ids index; 0: no owner


class NamespaceFigures:
    """One namespace's figures."""

    __slots__ = ("states", "cw_pids", "local_addrs", "pids", "listening", "dests",
                 "dests_overflowed", "orphans", "fw2_peers")

    def __init__(self) -> None:
        self.states: Counter = Counter()  # TcpState -> sockets
        self.cw_pids = Keys()  # CLOSE_WAIT by its first owner's pid (perfdata)
        self.local_addrs = Capped()  # every local address (addresses of this host)
        self.pids = Capped()  # every owner's pid
        self.listening: set[int] = set()  # listening ports
        self.dests: dict[tuple[str, str, int], Destination] = {}
        self.dests_overflowed = False
        self.orphans: Counter = Counter()  # unowned sockets in ORPHAN_STATES, by state
        self.fw2_peers = Keys()  # unowned FIN_WAIT2 by peer address


class Tally:
    """The rules' view of a socket table, built one socket at a time; `rules`: each
    rule's own state by rule id (RuleState), fed the sockets in the states it wants."""

    def __init__(self, rules: Mapping[str, RuleState] | None = None) -> None:
        self.rules: dict[str, RuleState] = dict(rules or {})
        self.count = 0
        self.spaces: dict[str, NamespaceFigures] = {}
        self.listeners: list[Socket] = []
        self.listeners_overflowed = False
        self.syn_recv: dict[tuple[str, int], SynGroup] = {}
        self.pids: set[int] = set()
        self.owner_ids: dict[tuple[int, str] | None, int] = {None: 0}
        self._send_q: list[tuple[int, int, str]] = []  # min-heap (send_q, -seq, label)
        fan: dict[int, list[Callable[[Socket], None]]] = {}
        for state in self.rules.values():
            for st in state.states:
                fan.setdefault(int(st), []).append(state.add)
        self._fan = {st: tuple(adds) for st, adds in fan.items()}

    @classmethod
    def of(cls, socks: Iterable[Socket], rules: Mapping[str, RuleState] | None = None) -> Tally:
        t = cls(rules)
        for s in socks:
            t.add(s)
        return t

    def rule(self, rule_id: str) -> Any:
        """The state rule `rule_id` kept (its own RuleState class), None when it keeps none."""
        return self.rules.get(rule_id)

    def add(self, s: Socket) -> None:
        # The doctor's per-socket path (100k calls a run): the common cases are
        # tested inline (a member already in a Capped set, one owner, a known
        # destination) and the bounded counters' add() called only past them.
        self.count += 1
        netns = s.netns
        space = self.spaces.get(netns)
        if space is None:
            space = self.spaces[netns] = NamespaceFigures()
        state = s.state
        space.states[state] += 1
        addr = s.local_addr
        if addr not in space.local_addrs.members:
            space.local_addrs.add(addr)
        owners = s.owners
        if owners:
            space_pids = space.pids
            for o in owners:
                pid = o.pid
                self.pids.add(pid)
                if pid not in space_pids.members:
                    space_pids.add(pid)
        if s.send_q > 0:
            self._top_send_q(s)
        fan = self._fan.get(state)
        if fan is not None:
            for add in fan:
                add(s)
        if state == LISTEN:
            space.listening.add(s.local_port)
            if len(self.listeners) < LISTENERS:
                self.listeners.append(s)
            else:
                self.listeners_overflowed = True
            return
        if s.local_port not in space.listening:
            self._dest(space, s, owners)
        if state == CLOSE_WAIT:
            if owners:
                space.cw_pids.add(owners[0].pid)
        elif state in SYN_RECV_STATES:
            g = self.syn_recv.get((netns, s.local_port))
            if g is None:
                g = self.syn_recv[(netns, s.local_port)] = SynGroup()
            g.count += 1
            g.sources.add(s.peer_addr)
        if not owners and state in ORPHAN_STATES:
            space.orphans[state] += 1
            if state == FIN_WAIT2:
                space.fw2_peers.add(s.peer_addr)

    # ---------------------------------------------------------------- the groups

    def _dest(self, space: NamespaceFigures, s: Socket, owners: tuple) -> None:
        """time-wait-pressure's destinations: a socket on a port known to listen is
        left out (by add); the ephemeral range and later listeners are applied by
        dest_groups."""
        key = (s.local_addr, s.peer_addr, s.peer_port)
        d = space.dests.get(key)
        if d is None:
            if len(space.dests) >= bounded.DESTINATIONS:
                space.dests_overflowed = True
                return
            d = space.dests[key] = Destination()
        if len(owners) == 1:  # common.owner() without the call
            o = owners[0]
            who: tuple[int, str] | None = (o.pid, o.comm)
        else:
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
        for state in self.rules.values():
            out += state.notes()
        if any(g.sources.overflowed for g in self.syn_recv.values()):
            out.append(f"syn-flood: more than {bounded.DISTINCT:,} sources to one port: "
                       "distinct_sources is a lower bound")
        return out
