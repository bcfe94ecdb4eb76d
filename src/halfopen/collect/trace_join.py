"""Tie each decoded trace event to its socket and the socket to its owner.

A socket is followed by its kernel address (skaddr, in every TCP event) from the
first event that names it until tcp_destroy_sock; its cookie is learned from
the events that carry one (tcp_receive_reset, tcp_destroy_sock) or from sock_diag.

Owners: inet_sock_set_state fires in softirq context, so its common_pid is
whoever was on the CPU (bcc#2304) and is never used. The owner comes from the
owner scan (collect.owner_cache: socket inode -> pid, comm, fd, container),
joined to the socket by its addresses through one sock_diag dump of the
connected states (which also gives the inode and the cookie): `OwnerLookup`,
at most once per `every_s`, only when a socket needs one. A socket that was
born and gone between two lookups keeps a null owner, unless its owner's own
close() named it. close() events are the owner's: their thread id is mapped to
the process (Tgid) and the fd to the socket inode the last owner scan saw
behind it (the fd is already closed when the event is read).

Network namespace: "host" when the tracer's namespace's sock_diag dump found the
socket, else null (not known; never guessed).

CLOSE_WAIT sockets alive at the start (a leaker's) are learned from the first
lookup, so a close() on one of them is seen even before any event names it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from ..kernel import netlink, procfs
from ..model.socket import Owner
from ..model.states import TcpState
from ..model.trace import GAVE_UP_KEEPALIVE, GAVE_UP_RETRANSMIT, TraceEvent, endpoint, state_word
from ..records import record
from . import trace_read as tr
from .diag_replies import EXT_INFO, AddressCache, dump_sockets
from .owner_cache import OwnerCache

_ESTABLISHED = int(TcpState.ESTABLISHED)
_CLOSE_WAIT = int(TcpState.CLOSE_WAIT)
_CLOSE = int(TcpState.CLOSE)
_FIN_WAIT1 = int(TcpState.FIN_WAIT1)
_LAST_ACK = int(TcpState.LAST_ACK)
# sock_diag states asked for by a lookup: where a socket still has an inode.
_LOOKUP_STATES = sum(1 << s for s in (TcpState.ESTABLISHED, TcpState.SYN_SENT, TcpState.CLOSE_WAIT,
                                      TcpState.FIN_WAIT1, TcpState.FIN_WAIT2, TcpState.CLOSING,
                                      TcpState.LAST_ACK))


@record
class Flow:
    """One socket as its events showed it."""

    src: str
    dst: str
    state: int = 0  # 0: not known yet
    since: int = 0  # ns (trace clock) it entered `state`; 0: before the trace
    born: int = 0  # ns it became ESTABLISHED; 0: not seen
    owner: Owner | None = None
    inode: int = 0
    cookie: int | None = None
    netns: str | None = None
    looked_up: int = 0  # lookups that tried this flow
    reset_in: TraceEvent | None = None  # a received RST whose state the next X -> CLOSE gives
    fin: bool = False  # the peer's FIN (-> CLOSE_WAIT) seen in this trace
    closed: bool = False  # its owner closed or shut it down while in CLOSE_WAIT
    earlier: bool = False  # found in CLOSE_WAIT by a lookup: its FIN came before we saw it
    reset_out: str | None = None  # the reason of a reset this side sent ("-": none given)
    retransmits: int = 0
    active_at: float | None = None  # epoch of its last data either way (tcp_info at a lookup)
    gave_up: str | None = None  # the kernel gave up on it: model.trace.GAVE_UP_*


def tgid_of(tid: int, proc: str = "/proc") -> int | None:
    """The process of a thread (/proc/TID/status Tgid; /proc/TID exists for threads too)."""
    try:
        return int(procfs.status(tid, proc)["Tgid"])
    except (OSError, KeyError, ValueError):
        return None


class OwnerLookup:
    """sock_diag + the owner cache: addresses -> (inode, cookie, owner), and (pid, fd) -> inode."""

    def __init__(self, every_s: float = 0.25, proc: str = "/proc", port: int | None = None,
                 activity: bool = False, share: float = 0.1) -> None:
        self.cache = OwnerCache(proc)
        self.share = share  # at most this fraction of the time spent on lookups
        # activity: ask tcp_info too, for when each connection last carried data (a
        # reset's idle time before it); the dump is then larger
        self.activity = activity
        self.active_at: dict[tuple[str, str], float] = {}  # of the last run, when asked
        self.every_s = every_s
        self.port = port
        self.proc = proc
        self.last = 0.0
        self.cost_s = 0.0  # what the last lookup took
        self.lookups = 0
        self._fds: dict[int, dict[int, int]] = {}  # pid -> {fd: inode}, of the last scan
        self._addresses = AddressCache()

    def due(self, now: float) -> bool:
        # at most every_s apart, and never more than `share` of the time (a tenth
        # by default) spent dumping (a dump of 100k sockets takes a few tenths of a second)
        return now - self.last >= max(self.every_s, self.cost_s / self.share)

    def run(self) -> dict[tuple[str, str], tuple[int, int, int, Owner | None]]:
        """One dump and one owner refresh: {(src, dst): (state, inode, cookie, owner)}."""
        self.last = time.monotonic()
        self.lookups += 1
        owner_map = self.cache.refresh()
        self._fds = {}
        get = owner_map.owners.getter()
        found: dict[tuple[str, str], tuple[int, int, int, Owner | None]] = {}
        self.active_at = {}
        now = time.time()
        with netlink.open_sock_diag() as sock:
            for family in (socket.AF_INET, socket.AF_INET6):
                for s in dump_sockets(sock, family, _LOOKUP_STATES, ext=EXT_INFO if self.activity else 0,
                                      addresses=self._addresses):
                    if self.port and self.port not in (s.local_port, s.peer_port):
                        continue
                    owners = get(s.inode) if s.inode else ()
                    key = (endpoint(s.local_addr, s.local_port), endpoint(s.peer_addr, s.peer_port))
                    found[key] = (s.state, s.inode, s.cookie, owners[0] if owners else None)
                    ti = s.tcp_info
                    if ti is not None:
                        self.active_at[key] = now - min(ti.last_data_recv, ti.last_data_sent) / 1000
        self.cost_s = time.monotonic() - self.last
        return found

    def fd_inode(self, pid: int, fd: int) -> int | None:
        """The socket inode behind `pid`'s `fd` at the last owner scan, or None."""
        table = self._fds.get(pid)
        if table is None:
            table = {}
            om = self.cache.owner_map
            proc = om.processes.get(pid) if om is not None else None
            if proc is not None and om is not None:
                get = om.owners.getter()
                for inode in proc.socket_inodes:
                    for o in get(inode):
                        if o.pid == pid:
                            table[o.fd] = inode
            self._fds[pid] = table
        return table.get(fd)

    def comm(self, pid: int) -> str | None:
        om = self.cache.owner_map
        proc = om.processes.get(pid) if om is not None else None
        return proc.comm if proc is not None else procfs.comm(pid, self.proc)


def _container_name(owner: Owner | None) -> str | None:
    """As `sockets -p` names it: 'shop/web-7f9/nginx' in a pod, 'docker:redis'."""
    if owner is None or owner.container is None:
        return None
    return owner.container.text()


class Joiner:
    """Decoded events in, TraceEvents with owners out (see the module docstring)."""

    def __init__(self, epoch: Callable[[int], float], lookup: OwnerLookup,
                 saved_tgids: Callable[[], dict[int, int]] = dict,
                 follow: Callable[[set[int]], None] | None = None) -> None:
        self.epoch = epoch
        # told the owners of the sockets followed after each lookup: the reader then
        # reads close() from those processes only (trace_read.TraceReader.follow)
        self.follow = follow
        self.saved_tgids = saved_tgids  # the kernel's tid -> tgid, for threads already gone
        self.lookup = lookup
        self.flows: dict[int, Flow] = {}  # skaddr -> flow
        self.by_tuple: dict[tuple[str, str], Flow] = {}  # flows not yet tied to a skaddr, and all
        self.by_inode: dict[int, Flow] = {}
        self._tgids: dict[int, int | None] = {}
        self._held: list[tuple[TraceEvent, Flow | None]] = []  # waiting for a lookup
        self._new: list[Flow] = []  # flows no lookup has tried yet
        self.earlier: list[Flow] = []  # flows a lookup found in CLOSE_WAIT (their FIN unseen)

    # -- lookups ------------------------------------------------------------------

    def learn(self) -> None:
        """Run a lookup: owners, inodes and cookies of the flows that need one, and
        the CLOSE_WAIT sockets that exist now (a close() on one is then seen)."""
        found = self.lookup.run()
        owners: set[int] = set()
        for key, (state, inode, cookie, owner) in found.items():
            flow = self.by_tuple.get(key)
            if flow is None:
                if state != _CLOSE_WAIT:
                    continue
                flow = Flow(key[0], key[1], state, earlier=True)
                self.by_tuple[key] = flow
                self.earlier.append(flow)
            flow.looked_up += 1
            if inode and flow.inode != inode:
                flow.inode = inode
                self.by_inode[inode] = flow
            flow.cookie = cookie
            flow.netns = "host"
            if owner is not None:
                flow.owner = owner
                owners.add(owner.pid)
            active = self.lookup.active_at.get(key)
            if active is not None:
                flow.active_at = active
        self._new = []
        if self.follow is not None and owners:
            self.follow(owners)

    def _flow(self, skaddr: int, src: str, dst: str) -> Flow:
        flow = self.flows.get(skaddr)
        if flow is None or (flow.src, flow.dst) != (src, dst):
            flow = self.by_tuple.get((src, dst)) or Flow(src, dst)
            self.flows[skaddr] = flow
            self.by_tuple[(src, dst)] = flow
            self._new.append(flow)
        return flow

    def _forget(self, skaddr: int) -> None:
        flow = self.flows.pop(skaddr, None)
        if flow is not None:
            if self.by_tuple.get((flow.src, flow.dst)) is flow:
                del self.by_tuple[(flow.src, flow.dst)]
            if flow.inode and self.by_inode.get(flow.inode) is flow:
                del self.by_inode[flow.inode]

    def _tgid(self, tid: int) -> int | None:
        if tid not in self._tgids:
            if len(self._tgids) > 65536:
                self._tgids.clear()
            tgid = tgid_of(tid, self.lookup.proc)
            if tgid is None:
                tgid = self.saved_tgids().get(tid)
            self._tgids[tid] = tgid
        return self._tgids[tid]

    # -- events ---------------------------------------------------------------------

    def feed(self, raw: list[tuple]) -> None:
        """Take decoded events (trace_read's tuples, oldest first)."""
        held = self._held
        epoch = self.epoch
        for ts, kind, skaddr, saddr, sport, daddr, dport, a, b in raw:
            if kind == tr.CLOSE:
                self._close(ts, a, b)
                continue
            src = endpoint(saddr, sport) if saddr is not None else None
            dst = endpoint(daddr, dport) if daddr is not None else None
            if kind == tr.RESET_SENT and not skaddr:
                held.append((TraceEvent(epoch(ts), "reset-sent", src, dst, reason=b,
                                        state=state_word(a)), None))
                continue
            if src is None or dst is None:
                continue
            flow = self._flow(skaddr, src, dst)
            if kind == tr.STATE:
                self._state(ts, flow, a, b)
                if b == _CLOSE and flow.reset_in is not None:
                    flow.reset_in.state = state_word(a)
                    flow.reset_in = None
            elif kind == tr.RESET_SENT:
                flow.reset_out = b or "-"
                held.append((TraceEvent(epoch(ts), "reset-sent", src, dst, reason=b,
                                        state=state_word(a)), flow))
            elif kind == tr.RESET_RECEIVED:
                if a:
                    flow.cookie = a
                when = epoch(ts)
                ev = TraceEvent(when, "reset-received", src, dst, reason=None,
                                state=state_word(flow.state) if flow.state else None,
                                idle_s=(max(0.0, when - flow.active_at)
                                        if flow.active_at is not None else None))
                flow.reset_in = ev
                held.append((ev, flow))
            elif kind == tr.RETRANSMIT:
                flow.retransmits += 1
                held.append((TraceEvent(epoch(ts), "retransmit-timeout", src, dst,
                                        state=state_word(a)), flow))
            elif kind == tr.DESTROY:
                if a:
                    flow.cookie = a
                self._forget(skaddr)

    @staticmethod
    def _gave_up(flow: Flow, new: int) -> str | None:
        """Why the kernel, not a person, ended the flow: -> CLOSE after a reset it sent
        because keepalive ran out (reason tcp_keepalive_timeout, 6.10+), or after
        retransmissions with no reset either way (tcp_write_err: tcp_retries2,
        TCP_USER_TIMEOUT). None otherwise."""
        if new != _CLOSE or flow.reset_in is not None:
            return None
        if flow.reset_out == "tcp_keepalive_timeout":
            return GAVE_UP_KEEPALIVE
        if flow.reset_out is None and flow.retransmits:
            return GAVE_UP_RETRANSMIT
        return None

    def _state(self, ts: int, flow: Flow, old: int, new: int) -> None:
        ev = None
        flow.gave_up = self._gave_up(flow, new)
        if old == _ESTABLISHED and new != _ESTABLISHED:
            ev = TraceEvent(self.epoch(ts), "state", flow.src, flow.dst,
                            from_state=state_word(old), to_state=state_word(new))
            if new == _CLOSE_WAIT:
                ev.ended_by = "peer"
                flow.fin = True
            elif new == _FIN_WAIT1:
                ev.ended_by = "local"
            if flow.born:
                ev.lived_s = (ts - flow.born) / 1e9
            ev.gave_up = flow.gave_up
        elif old == _CLOSE_WAIT:
            ev = TraceEvent(self.epoch(ts), "state", flow.src, flow.dst,
                            from_state=state_word(old), to_state=state_word(new))
            if flow.state == _CLOSE_WAIT and flow.since:
                ev.close_wait_s = (ts - flow.since) / 1e9
            # LAST_ACK: close() or shutdown(SHUT_WR) by the owner; CLOSE without a
            # reset received: its close() with unread data or SO_LINGER 0 (tcp_close)
            # (not when the kernel gave up: keepalive also runs in CLOSE_WAIT)
            ev.gave_up = flow.gave_up
            if new == _LAST_ACK or (new == _CLOSE and flow.reset_in is None and flow.gave_up is None):
                flow.closed = True
        if new == _ESTABLISHED:
            flow.born = ts
        flow.state = new
        flow.since = ts
        if ev is not None:
            self._held.append((ev, flow))

    def _close(self, ts: int, tid: int, fd: int) -> None:
        pid = self._tgid(tid)
        if pid is None:
            return
        inode = self.lookup.fd_inode(pid, fd)
        flow = self.by_inode.get(inode) if inode else None
        if flow is None:
            return  # not a socket we follow
        if flow.state == _CLOSE_WAIT:
            flow.closed = True
        if flow.owner is None or flow.owner.pid != pid:
            comm = self.lookup.comm(pid) or "?"
            flow.owner = Owner(pid, comm, fd, flow.owner.container if flow.owner else None)
        self._held.append((TraceEvent(self.epoch(ts), "close", flow.src, flow.dst, fd=fd,
                                      state=state_word(flow.state) if flow.state else None), flow))

    def ready(self, force: bool = False) -> list[tuple[TraceEvent, Flow | None]]:
        """The events held, with owners filled in: a lookup first when one is due
        and some flow needs it (or `force`), else nothing until it is due."""
        if not self._held and not self._new:
            return []
        needs = bool(self._new) or any(f is not None and f.owner is None for _e, f in self._held)
        if needs:
            if not force and not self.lookup.due(time.monotonic()):
                return []
            self.learn()
        out = self._held
        self._held = []
        for ev, flow in out:
            if flow is None:
                continue
            o = flow.owner
            if o is not None:
                ev.pid, ev.comm, ev.container = o.pid, o.comm, _container_name(o)
            ev.netns = flow.netns
            ev.cookie = flow.cookie
        return out
