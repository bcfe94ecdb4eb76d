"""One Sample: what the watch, the history and the exporter keep of a snapshot.

Counts by (netns, state), per-process counts by state with fds and fd limit,
listeners with accept-queue use and SYN_RECV, host facts, and the doctor's
findings when it ran. Built in one pass over the sockets; no I/O here except
through the `fd_limit` function passed in.

Oldest CLOSE_WAIT age (an estimate): tcp_info's last_ack_recv is the time
since the last ACK from the peer. The peer's FIN carries an ACK and, while our
application neither writes nor probes, nothing else arrives in CLOSE_WAIT, so
last_ack_recv dates the FIN. Any later ACK (keepalive probe answers, data we
sent) resets it: the value is a lower bound on the socket's time in CLOSE_WAIT.
The history (history_db.py) dates each socket from its first sighting and so
keeps the bound from shrinking.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import field

from halfopen.records import record

from ..collect.state_tally import Tally
from ..model.container import Container
from ..model.finding import Finding
from ..model.process import Process
from ..model.socket import Socket
from ..model.states import TcpState, state_name
from .hostfacts import HostStats
from .process_labels import Identity

CLOSE_WAIT = int(TcpState.CLOSE_WAIT)
LISTEN = int(TcpState.LISTEN)
SYN_RECV_STATES = (int(TcpState.SYN_RECV), int(TcpState.NEW_SYN_RECV))


@record
class ProcSample:
    pid: int
    comm: str
    fds: int | None = None
    fd_limit: int | None = None
    states: dict[str, int] = field(default_factory=dict)  # "close_wait" -> n
    oldest_close_wait_s: float | None = None  # lower bound, see module docstring
    container: Container | None = None  # None: on the host, or not known

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def close_wait(self) -> int:
        return self.states.get("close_wait", 0)


@record
class Listener:
    netns: str
    addr: str
    port: int
    accept_queue: int  # Recv-Q of a LISTEN socket
    backlog: int  # Send-Q of a LISTEN socket: the accept queue's limit
    syn_recv: int = 0  # SYN_RECV request sockets to this port in this netns
    pid: int | None = None
    comm: str = ""


@record(frozen=True)
class CollectorRun:
    """How one collector did on this sample: the exporter's collector gauges."""

    success: bool
    duration_s: float | None = None  # None: no timing (a host source inside the host run)


class CloseWaitSeen(Mapping[int, tuple[int, "float | None"]]):
    """cookie -> (pid or 0, age estimate in s) of every CLOSE_WAIT socket, in three
    arrays: 24 bytes a socket where a dict of tuples took about 100 (250k of them
    at a million sockets). Read whole, through items(); a lookup scans."""

    __slots__ = ("cookies", "pids", "ages")

    def __init__(self) -> None:
        self.cookies = array("Q")
        self.pids = array("q")
        self.ages = array("d")  # NaN: no tcp_info, age unknown

    def add(self, cookie: int, pid: int, age: float | None) -> None:
        self.cookies.append(cookie)
        self.pids.append(pid)
        self.ages.append(math.nan if age is None else age)

    def items(self) -> Iterator[tuple[int, tuple[int, float | None]]]:  # type: ignore[override]
        for cookie, pid, age in zip(self.cookies, self.pids, self.ages):
            yield cookie, (pid, None if age != age else age)

    def __getitem__(self, cookie: int) -> tuple[int, float | None]:
        for c, value in self.items():
            if c == cookie:
                return value
        raise KeyError(cookie)

    def __iter__(self) -> Iterator[int]:
        return iter(self.cookies)

    def __len__(self) -> int:
        return len(self.cookies)


@record
class Sample:
    t: float  # unix time
    host: str
    states: dict[tuple[str, str], int]  # (netns, state name) -> n
    processes: dict[int, ProcSample]
    listeners: list[Listener]
    facts: HostStats
    close_wait: Mapping[int, tuple[int, float | None]] = field(default_factory=dict)
    # ^ cookie -> (pid or 0, age estimate in s), a CloseWaitSeen when folded;
    # cookie 0 (procfs) is not kept
    findings: list[Finding] | None = None  # None: the doctor did not run
    notes: list[str] = field(default_factory=list)
    identities: dict[int, Identity] = field(default_factory=dict)  # pid -> what survives restarts
    collectors: dict[str, CollectorRun] = field(default_factory=dict)  # "sockets" -> run

    def state_totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_ns, st), n in self.states.items():
            out[st] = out.get(st, 0) + n
        return out


class Fold:
    """A Sample folded one socket at a time (`add`), then finished (`sample`): what a
    full sample feeds as the dump streams, next to the doctor's Tally."""

    __slots__ = ("states", "procs", "listeners", "syn_recv", "close_wait", "names")

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], int] = {}
        self.procs: dict[int, ProcSample] = {}
        self.listeners: dict[tuple[str, int], list[Listener]] = {}
        self.syn_recv: dict[tuple[str, int], int] = {}
        self.close_wait = CloseWaitSeen()
        self.names: dict[int, str] = {}

    def add(self, s: Socket) -> None:
        st = s.state
        name = self.names.get(st)
        if name is None:
            name = self.names[st] = state_name(st)
        key = (s.netns, name)
        states = self.states
        states[key] = states.get(key, 0) + 1
        if st in SYN_RECV_STATES:
            k = (s.netns, s.local_port)
            self.syn_recv[k] = self.syn_recv.get(k, 0) + 1
            return
        age = None
        if st == CLOSE_WAIT:
            bounds = s.fin_age_s
            age = bounds[0] if bounds is not None else None
        if st == LISTEN:
            owner = s.owners[0] if s.owners else None
            self.listeners.setdefault((s.netns, s.local_port), []).append(Listener(
                s.netns, s.local_addr, s.local_port, s.recv_q, s.send_q,
                pid=owner.pid if owner else None, comm=owner.comm if owner else ""))
        procs = self.procs
        seen: set[int] = set()
        for o in s.owners:
            if o.pid in seen:
                continue
            seen.add(o.pid)
            p = procs.get(o.pid)
            if p is None:
                p = procs[o.pid] = ProcSample(o.pid, o.comm)
            p.states[name] = p.states.get(name, 0) + 1
            if age is not None and (p.oldest_close_wait_s is None or age > p.oldest_close_wait_s):
                p.oldest_close_wait_s = age
        if st == CLOSE_WAIT and s.cookie:
            self.close_wait.add(s.cookie, s.owners[0].pid if s.owners else 0, age)

    @classmethod
    def of_tally(cls, tally: Tally, comm: Callable[[int], str]) -> Fold:
        """The fold of a streamed sample counted without Socket records
        (collect.state_tally): the same Sample as add() of every socket gives.
        comm: a holder pid's comm (the owner map's)."""
        fold = cls()
        names, states, procs = fold.names, fold.states, fold.procs
        for (ns, st), n in tally.states.items():
            name = names.get(st)
            if name is None:
                name = names[st] = state_name(st)
            states[ns, name] = states.get((ns, name), 0) + n
        for key, n in tally.pid_states.items():
            pid, st = key >> 4, key & 15
            p = procs.get(pid)
            if p is None:
                p = procs[pid] = ProcSample(pid, comm(pid))
            name = names.get(st)
            if name is None:
                name = names[st] = state_name(st)
            p.states[name] = n
        for pid, age in tally.oldest.items():
            p = procs.get(pid)
            if p is not None:
                p.oldest_close_wait_s = age
        fold.syn_recv = tally.syn_recv
        seen = fold.close_wait
        seen.cookies, seen.pids, seen.ages = tally.cw_cookies, tally.cw_pids, tally.cw_ages
        for s in tally.listeners:  # their states, listener series and holders' counts
            fold.add(s)
        return fold

    def sample(self, t: float, host: str, processes: dict[int, Process], facts: HostStats,
               fd_limit: Callable[[int], int | None] = lambda _pid: None,
               notes: list[str] | None = None) -> Sample:
        for pid, p in self.procs.items():
            proc = processes.get(pid)
            if proc is not None:
                p.fds = proc.fd_count
                p.container = proc.container
            p.fd_limit = fd_limit(pid)
        flat: list[Listener] = []
        for port_key, group in sorted(self.listeners.items()):
            # one SYN_RECV count per port: give it to the first listener on the port
            group[0].syn_recv = self.syn_recv.get(port_key, 0)
            flat.extend(group)
        return Sample(t, host, self.states, self.procs, flat, facts, self.close_wait, None,
                      list(notes or []))


def build(t: float, host: str, sockets: Iterable[Socket], processes: dict[int, Process],
          facts: HostStats, fd_limit: Callable[[int], int | None] = lambda _pid: None,
          notes: list[str] | None = None) -> Sample:
    """Fold sockets into a Sample in one pass."""
    fold = Fold()
    add = fold.add
    for s in sockets:
        add(s)
    return fold.sample(t, host, processes, facts, fd_limit, notes)
