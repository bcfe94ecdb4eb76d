"""close-wait-leak and fd-leak: the application does not close.

close-wait-leak, per process (and namespace) and side:
  The process's CLOSE_WAIT sockets are split by Socket.direction: inbound
  (accepted here: this process is the server) and outbound (it connected out:
  it is the client). Unknown direction (a snapshot saved before it was
  recorded) is judged as inbound, as before.

  A CLOSE_WAIT socket is *stuck* when its estimated age is at least
  STUCK_AGE_S. Age estimate, per the kernel facts: the peer's FIN carries an
  ACK, so tcp_info.last_ack_recv (time since the last ACK) is a lower bound
  on the time since the FIN (a later ACK resets it); last_data_recv ignores a
  bare FIN, so it is an upper bound (the last data came at or before the FIN).
  Ages below are the lower bound unless said otherwise.

  inbound (server: the peers closed, the code does not)
  severity   condition
  critical   stuck >= CRITICAL_COUNT, or RLIMIT_NOFILE projected within
             CRITICAL_ETA_S, or the process already uses >= FD_CRITICAL_RATIO
             of RLIMIT_NOFILE
  warning    stuck >= WARN_COUNT, or any stuck socket older than OLD_AGE_S
  info       1 .. WARN_COUNT-1 stuck sockets, all younger than OLD_AGE_S

  outbound (client: a pool keeps connections the server closed after its
  keep-alive timeout), named by remote service ip:port, with the server's
  timeout when the server listens on this host and its configuration was read
  (nginx keepalive_timeout, haproxy timeout client/http-keep-alive/tunnel,
  redis timeout, Apache KeepAliveTimeout: diagnose.local_servers)
  critical   growth (least squares over --history), any stuck socket older
             than OLD_AGE_S, RLIMIT_NOFILE within CRITICAL_ETA_S, or fds >=
             FD_CRITICAL_RATIO of RLIMIT_NOFILE
  warning    otherwise: a bounded pool that does not grow
  (socket ages give no rate here: a pool's sockets are spread by last use)

  either side, nothing stuck: CLOSE_WAIT younger than STUCK_AGE_S (or
  --min-age) is one info finding with the count and the oldest age - not
  judged yet, and not silent.

  Compared with catpaw (>= 100 CLOSE_WAIT system-wide, no age): ours names
  the process, ignores sockets that are merely closing (younger than
  STUCK_AGE_S), and fires on a handful of old ones in one process.

fd-leak, per process (in the namespaces being checked, or owning sockets there):
  socket fds whose inode is in no kernel socket table of any namespace
  (HostFacts.stale_socket_fds; the collector reads every namespace's tables,
  so a socket made in another namespace is not mistaken for a stale one)
  *and* that were shut down both ways (StaleSocketFd.hup: POLLHUP|POLLRDHUP
  from poll() on a pidfd_getfd duplicate): the kernel closed the TCP
  connection under the application (RST, keepalive or tcp_retries2 gave up,
  SOCK_DESTROY) and the fd stays open. A socket that was never connected or
  bound is in no table either, but it is not shut down (hup False): not
  counted. Fds whose hup could not be read (None) are not counted; their
  number is evidence. warning from FD_LEAK_WARN such fds or on growth in
  --history; info below (an application may be about to close a connection
  that was reset a moment ago).
"""

from __future__ import annotations

import statistics
from array import array
from collections.abc import Sequence

from halfopen.records import record

from ..model.finding import SEVERITY_RANK, Evidence, Finding, Fix
from ..model.history import slope_per_s
from ..model.host import UNLIMITED, ProcessLimits
from ..model.socket import OUTBOUND, Socket
from . import sides, traced
from .bounded import Distinct, Keys
from .common import (
    SOCK_DIAG,
    TCP_INFO,
    code_fix,
    ev,
    kill_fix,
    plural,
    prlimit_fix,
    seconds,
    subject,
    top,
    who,
)
from .context import Context, Options, Unavailable
from .local_servers import LocalServer, local_servers
from .tally import CLOSE_WAIT, OwnerGroups

STUCK_AGE_S = 30  # a live application closes within milliseconds of reading EOF
OLD_AGE_S = 3600  # even one socket this old in CLOSE_WAIT is a bug, not a slow close
WARN_COUNT = 10
CRITICAL_COUNT = 100  # catpaw's system-wide number, applied per process and aged
CRITICAL_ETA_S = 24 * 3600  # RLIMIT_NOFILE reached within a day at the current growth
FD_CRITICAL_RATIO = 0.9
MIN_SPREAD_S = 60  # ages must span at least this to estimate a rate from them
KILL_TERMS = 5  # at most this many ports or services named in a kill filter
FD_LEAK_WARN = 10  # as close-wait-leak's WARN_COUNT: dead connections still held

CAUSE = "application does not close"

WHY_CLOSE_WAIT = (
    "CLOSE_WAIT means the peer's FIN arrived and this process has not called close() on "
    "the socket. The kernel will not close it for the application: no timer ends "
    "CLOSE_WAIT except keepalive (off unless the application asked for it), so every "
    "such socket holds a file descriptor and kernel memory until the process closes it "
    "or exits. A Recv-Q of 1 or more means the process has not even read the EOF (it "
    "stopped reading the socket, e.g. a worker stuck or a connection forgotten in a "
    "pool); 0 means it read EOF (recv() returned 0) and did not close - typically an "
    "error path that returns without close(). This is not a network problem and not the "
    "peer's fault: a client that vanishes leaves ESTABLISHED, not CLOSE_WAIT. Killing "
    "the sockets (SOCK_DESTROY) frees the TCP state and sends RST, but the fds stay open "
    "until the application closes them; keepalive in CLOSE_WAIT moves the leak from the "
    "TCP table to the fd table. Only a code fix ends the leak."
)

WHY_CLOSE_WAIT_CLIENT = (
    "This process is the client of these connections: it connected out (their local ports "
    "are not listening ports of the namespace), and the server at the other end closed "
    "them - its FIN arrived - while this process has not called close(). That is how a "
    "connection pool looks after the server's idle timeout: the pool keeps idle "
    "connections for reuse; the server closes any connection idle longer than its "
    "keep-alive timeout (nginx keepalive_timeout, default 75 s; haproxy timeout "
    "http-keep-alive or timeout client; redis timeout; Apache KeepAliveTimeout, 5 s; Node.js "
    "keepAliveTimeout, 5 s); the pool does not look at an idle connection "
    "until it takes it out again, so each one stays in CLOSE_WAIT holding a file "
    "descriptor (Recv-Q 1: the FIN not yet read). No kernel timer ends CLOSE_WAIT unless "
    "the client set SO_KEEPALIVE. A bounded pool holds at most its size in such sockets and "
    "replaces them as it reuses them; a count that keeps growing means connections are "
    "dropped without close() or a new pool is made per request and abandoned. The server "
    "did nothing wrong: the fix is in the client's pool settings."
)


@record
class Pressure:
    """Growth and the fd limit of the process holding a pile."""

    rate: float | None  # sockets per second
    rate_note: str
    limits: ProcessLimits | None
    eta: float | None  # seconds to RLIMIT_NOFILE at that rate
    fd_ratio: float
    evidence: list


class CloseWaitState(OwnerGroups):
    """What close-wait-leak keeps of the dump: each owner's CLOSE_WAIT sockets per
    side, stuck (STUCK_AGE_S, or --min-age) or young (CloseWaitGroup)."""

    states = (CLOSE_WAIT,)

    def __init__(self, options: Options) -> None:
        super().__init__()
        self.stuck_age_s = options.age(STUCK_AGE_S)

    def add(self, s: Socket) -> None:
        self.group(s, CloseWaitGroup).add(s, s.direction == OUTBOUND, self.stuck_age_s)

    def notes(self) -> list[str]:
        return self.overflow_notes("close-wait-leak")


class CloseWaitGroup:
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



def _pressure(ctx: Context, pid: int | None, held: int, lows: Sequence[float],
              from_ages: bool) -> Pressure:
    """Growth (history, else the spread of ages when `from_ages`) and fd limits.

    `held` is the process's CLOSE_WAIT count now, the same measure as the history's
    "close_wait" series (both sides), so the fit's last point matches the others.
    """
    rate, note = None, ""
    if ctx.history is not None and pid is not None:
        pts = ctx.history.points(pid, "close_wait")
        if len(pts) >= 2:
            rate = slope_per_s(pts + [(ctx.now, held)])
            note = f"least-squares over {len(pts) + 1} samples ({ctx.history.source})"
    if rate is None and from_ages and len(lows) >= 3 and max(lows) - min(lows) >= MIN_SPREAD_S:
        rate = (len(lows) - 1) / (max(lows) - min(lows))
        note = ("estimated from the spread of socket ages (lower bounds): "
                "sockets still in CLOSE_WAIT per second over that span")
    hf = ctx.snapshot.host_facts
    limits = hf.processes.get(pid) if hf is not None and pid is not None else None
    evidence, eta = [], None
    if rate is not None:
        evidence.append(ev("close_wait_growth_per_hour", round(rate * 3600, 1),
                           "history" if "samples" in note else TCP_INFO, note))
    if limits is not None:
        evidence.append(ev("fds_open", limits.fd_count, "/proc/PID/fd"))
        if limits.nofile_soft != UNLIMITED:
            evidence.append(ev("rlimit_nofile_soft", limits.nofile_soft, "/proc/PID/limits"))
            if rate is not None and rate > 0:
                eta = max(0.0, (limits.nofile_soft - limits.fd_count) / rate)
                evidence.append(ev("seconds_to_rlimit_nofile", round(eta), "projection",
                                   "at the growth above, every leaked socket one fd"))
    fd_ratio = (limits.fd_count / limits.nofile_soft
                if limits is not None and limits.nofile_soft not in (UNLIMITED, 0) else 0)
    return Pressure(rate, note, limits, eta, fd_ratio, evidence)


def _age_evidence(pile: CloseWaitGroup, stuck_age: float, note: str) -> list:
    count = pile.stuck
    evidence = [
        ev("close_wait_sockets", count, SOCK_DIAG,
           f"{note}CLOSE_WAIT for at least {seconds(stuck_age)}; "
           f"{pile.count} in CLOSE_WAIT in all"),
        ev("recv_q_ge_1", pile.unread, SOCK_DIAG, "has not read EOF (Recv-Q >= 1)"),
        ev("recv_q_0", count - pile.unread, SOCK_DIAG,
           "read EOF but never called close() (Recv-Q 0)"),
    ]
    if pile.lows:
        evidence += [
            ev("oldest_age_s", round(max(pile.lows)), TCP_INFO,
               "lower bound: last_ack_recv (the FIN's ACK; a later ACK resets it); "
               f"upper bound {round(pile.high)} s from last_data_recv"),
            ev("median_age_s", round(statistics.median(pile.lows)), TCP_INFO,
               "lower bound, last_ack_recv"),
        ]
    if pile.undated:
        evidence.append(ev("undated_sockets", pile.undated, SOCK_DIAG,
                           "no tcp_info (procfs fallback): age unknown"))
    return evidence


def _prlimit(pid: int, limits: ProcessLimits | None) -> list[Fix]:
    if limits is None or limits.nofile_soft == UNLIMITED:
        return []
    hard = limits.nofile_hard
    soft = hard if hard != UNLIMITED else limits.nofile_soft * 4
    if soft <= limits.nofile_soft:
        return []
    return [prlimit_fix(pid, soft, why="buys time only: raises the soft fd limit (up to the "
                                       "hard limit)")]


def check_close_wait(ctx: Context) -> list[Finding]:
    state: CloseWaitState = ctx.table.rule("close-wait-leak")
    stuck_age = state.stuck_age_s
    old_age = max(OLD_AGE_S, stuck_age)
    findings = []
    for (netns, pid, comm), group in state.by_size():
        for side, pile in group.sides():
            assert isinstance(pile, CloseWaitGroup)
            if not pile.stuck:
                findings.append(_young(netns, pid, comm, side, pile, stuck_age))
            elif side == sides.CLIENT:
                findings.append(_client_pile(ctx, netns, pid, comm, pile, group.total, stuck_age,
                                             old_age))
            else:
                findings.append(_server_pile(ctx, netns, pid, comm, pile, group.total, stuck_age,
                                             old_age))
    trace = ctx.traced()
    if trace is not None:
        findings = _with_trace(trace, findings, stuck_age)
    return findings


def _with_trace(trace, findings: list[Finding], stuck_age: float) -> list[Finding]:
    """doctor --trace: each finding of a traced owner gets its FINs and close() calls;
    an owner whose peers' FINs came in the window and who left some of those sockets in
    CLOSE_WAIT gets a finding of its own when the socket table had none (the table was
    read at the window's start, before those FINs)."""
    named = set()
    for f in findings:
        pid = f.subject.pid
        row = trace.owner(pid) if pid is not None else None
        if row is None or not (row.fins_received or row.earlier_close_wait):
            continue
        named.add(pid)
        f.evidence += traced.close_wait_evidence(row, trace.window_s)
        severity, title = _traced_verdict(row, stuck_age)
        if SEVERITY_RANK[severity] > SEVERITY_RANK[f.severity] and traced.unclosed(row):
            # the table read the sockets before they aged (or before the FINs): the
            # trace's exact ages judge them
            f.severity, f.title = severity, title
        elif row.fins_received:
            f.title += f"; in the trace window it {traced.fin_phrase(row)}"
    for row in trace.owners:
        if row.pid is not None and row.pid not in named and traced.unclosed(row):
            findings.append(_traced_pile(row, trace.window_s, stuck_age))
    return findings


def _traced_verdict(row, stuck_age: float) -> tuple[str, str]:
    """(severity, title) from a traced owner's FINs and close() calls: a socket is stuck
    when its exact CLOSE_WAIT age reaches the threshold; an owner that closed none of
    them (the article's strace check, positive) is a warning from the first stuck one."""
    stuck = sum(1 for a in row.close_wait_ages_s if a >= stuck_age)
    if stuck >= CRITICAL_COUNT:
        severity = "critical"
    elif stuck >= WARN_COUNT or (stuck and row.closes_called == 0):
        severity = "warning"
    else:
        severity = "info"
    oldest = max(row.close_wait_ages_s, default=None)
    title = (f"{who(row.pid, row.comm or '?')} {traced.fin_phrase(row)}; "
             f"{row.still_in_close_wait} still in CLOSE_WAIT")
    if oldest is not None:
        title += f", oldest {_age_text(oldest)}"
    if severity == "info":
        title += f" (not judged before {seconds(stuck_age)}: --min-age)"
    return severity, title


def _traced_pile(row, window_s: float, stuck_age: float) -> Finding:
    """close-wait-leak from the trace alone: exact ages, so stuck is exact too."""
    severity, title = _traced_verdict(row, stuck_age)
    fixes = []
    if row.pid is not None:
        fixes.append(kill_fix(f"state close-wait pid {row.pid}",
                              "frees the TCP state now (RST to each peer); the fds stay open "
                              "until the process closes them"))
    fixes.append(code_fix("close the socket on every path after recv() returns 0 or an error "
                          "(try/finally, `with`, defer conn.Close())"))
    return Finding(
        id="close-wait-leak", severity=severity, cause=CAUSE, title=title,
        subject=subject(row.netns or "host", row.pid, row.comm or "?"),
        evidence=traced.close_wait_evidence(row, window_s), fixes=fixes, why=WHY_CLOSE_WAIT)


def _server_pile(ctx: Context, netns: str, pid: int | None, comm: str, pile: CloseWaitGroup,
                 process_total: int, stuck_age: float, old_age: float) -> Finding:
    """The peers closed, this process (the server, or unknown) does not: a code bug.

    `process_total`: its CLOSE_WAIT sockets on both sides (as --history counts)."""
    count, oldest = pile.stuck, pile.oldest
    peers, ports = pile.peers, pile.ports
    pressure = _pressure(ctx, pid, process_total, pile.lows, from_ages=True)
    evidence = _age_evidence(pile, stuck_age, "")
    evidence += [ev("peers", top(peers), SOCK_DIAG, "peer address, count"),
                 ev("local_ports", top(ports), SOCK_DIAG, "local port, count")]
    evidence += pressure.evidence
    eta = pressure.eta

    if count >= CRITICAL_COUNT or (eta is not None and eta < CRITICAL_ETA_S) \
            or pressure.fd_ratio >= FD_CRITICAL_RATIO:
        severity = "critical"
    elif count >= WARN_COUNT or (oldest is not None and oldest >= old_age):
        severity = "warning"
    else:
        severity = "info"

    title = f"{who(pid, comm)} holds {plural(count, 'CLOSE_WAIT socket')}"
    if oldest is not None:
        title += f", oldest {seconds(oldest)}"
    if eta is not None:
        title += f"; RLIMIT_NOFILE in ~{seconds(eta)}"
    fixes = []
    if pid is not None:
        flt = f"state close-wait pid {pid}"
        if process_total > pile.count and len(ports) <= KILL_TERMS:
            # the process is a client too: leave its outbound sockets to their own finding
            flt += " and ( " + " or ".join(f"sport = :{p}" for p in ports) + " )"
        fixes.append(kill_fix(flt,
                              "frees the TCP state now (RST to each peer); the fds stay "
                              "open until the process closes them - restart it if they "
                              "matter"))
        fixes += _prlimit(pid, pressure.limits)
    fixes.append(code_fix(
        "close the socket on every path after recv() returns 0 or an error "
        "(try/finally, `with`, defer conn.Close()); " +
        ("most of these have unread data (Recv-Q >= 1): find where the process stops "
         "reading - a blocked worker, a connection dropped from a pool without close()"
         if pile.unread > count - pile.unread else
         "most read EOF (Recv-Q 0): look for an early return after EOF or an error "
         "that skips close()")))
    direction = pile.stuck_direction
    return Finding(
        id="close-wait-leak", severity=severity, cause=CAUSE, title=title,
        subject=subject(netns, pid, comm, ports.most_common(1)[0][0] if len(ports) == 1 else None,
                        direction=direction),
        evidence=evidence, fixes=fixes, why=WHY_CLOSE_WAIT)


def _client_pile(ctx: Context, netns: str, pid: int | None, comm: str, pile: CloseWaitGroup,
                 process_total: int, stuck_age: float, old_age: float) -> Finding:
    """This process connected out and the servers closed: a pool keeping dead connections.

    warning: a bounded pool that does not grow; critical: growth (history), the oldest
    older than OLD_AGE_S, or the process near RLIMIT_NOFILE. Socket ages do not give a
    rate here: a pool's sockets are spread by their last use, not by a leak.
    """
    count, oldest = pile.stuck, pile.oldest
    dests = pile.dests
    servers = local_servers(ctx, netns, pile.wanted)
    pressure = _pressure(ctx, pid, process_total, pile.lows, from_ages=False)
    eta = pressure.eta

    evidence = _age_evidence(pile, stuck_age, "this process is the client (it connected out: "
                                              "its local ports are not listening ports); ")
    evidence.append(ev("destinations", top(dests, 10), SOCK_DIAG,
                       "remote service ip:port, CLOSE_WAIT connections to it"))
    evidence += _local_server_evidence(servers)
    evidence += pressure.evidence

    (first, _n), = dests.most_common(1)
    to = first if len(dests) == 1 else f"{plural(len(dests), 'service')} (most to {first})"
    title = (f"{who(pid, comm)} is the client: {plural(count, 'CLOSE_WAIT connection')} "
             f"to {to} that the server closed")
    known = [s for s in servers.values() if s.keepalive_timeout_s is not None]
    if known and len(dests) == 1:
        title += " " + _closed_after(known[0])
    if oldest is not None:
        title += f"; oldest {seconds(oldest)}"
    if eta is not None:
        title += f"; RLIMIT_NOFILE in ~{seconds(eta)}"
    return Finding(
        id="close-wait-leak", severity=_client_severity(pile, pressure, old_age), cause=CAUSE,
        title=title,
        subject=subject(netns, pid, comm, pile.rport.single,
                        direction=OUTBOUND, peer=first if len(dests) == 1 else None),
        evidence=evidence, fixes=_client_pile_fixes(pid, pile, pressure, known),
        why=WHY_CLOSE_WAIT_CLIENT)


def _local_server_evidence(servers: dict[str, LocalServer]) -> list[Evidence]:
    """The servers on this host that serve the pile's destinations: their idle timeout,
    or that they set none."""
    evidence = []
    for srv in servers.values():
        said = srv.says()
        evidence.append(ev("server_keepalive_timeout_s", srv.keepalive_timeout_s, srv.source,
                           f"{srv.service} is served on this host by {who(srv.pid, srv.comm)}; "
                           + (f"it closes connections idle this long: {said}" if said else
                              "it closes connections idle this long")))
        if srv.timeouts is not None and srv.timeouts.idle is None:
            evidence.append(ev("server_idle_timeout", "none", srv.timeouts.config,
                               f"{srv.timeouts.kind} sets no idle timeout: it closed these "
                               "connections for another reason (a restart, a kill, a limit)"))
    return evidence


def _client_severity(pile: CloseWaitGroup, pressure: Pressure, old_age: float) -> str:
    oldest, eta = pile.oldest, pressure.eta
    grows = pressure.rate is not None and pressure.rate > 0
    if grows or (oldest is not None and oldest >= old_age) \
            or (eta is not None and eta < CRITICAL_ETA_S) \
            or pressure.fd_ratio >= FD_CRITICAL_RATIO:
        return "critical"
    return "warning"


def _client_pile_fixes(pid: int | None, pile: CloseWaitGroup, pressure: Pressure,
                       known: list[LocalServer]) -> list[Fix]:
    """Free the TCP state now and buy fds; then the pool advice, against the shortest
    idle timeout of the `known` servers."""
    fixes = []
    if pid is not None:
        only = sides.dst_filter(list(pile.dests), KILL_TERMS)
        fixes.append(kill_fix(f"state close-wait pid {pid}" + (f" and ( {only} )" if only else ""),
                              "frees the TCP state now (RST to a server that already closed: "
                              "harmless); the pool's next use of each finds it dead and "
                              "reconnects; the fds stay open until the pool closes them"))
        fixes += _prlimit(pid, pressure.limits)
    closest = min(known, key=lambda s: s.keepalive_timeout_s or 0, default=None)
    return fixes + _client_fixes(closest.keepalive_timeout_s if closest else None,
                                 closest.says() if closest else "")

def _closed_after(srv) -> str:
    """'after its 2s `timeout client` (haproxy)', 'after each response: `KeepAlive Off`
    (Apache)', 'after its 17s keepalive timeout (nginx)'."""
    said = srv.says()
    if not said:
        return f"after its {_age_text(srv.keepalive_timeout_s or 0)} keepalive timeout ({srv.comm})"
    return f"after each response: {said}" if srv.keepalive_timeout_s == 0 else f"after its {said}"


def _client_fixes(timeout: float | None, said: str = "") -> list[Fix]:
    """The pool advice; `said`: how the server's own setting is named ('2s `timeout
    client` (haproxy)'), when its configuration was read."""
    if timeout == 0:
        below = (f"shorter than nothing: the server closes after each response ({said}); "
                 "pooling gains nothing until keep-alive is on in the server")
    elif timeout is not None:
        target = timeout * 0.8
        below = (f"below the server's keepalive timeout ({said or _age_text(timeout)}), e.g. "
                 + (seconds(int(target)) if target >= 2 else f"{int(target * 1000)}ms"))
    else:
        below = ("below the server's idle timeout (nginx keepalive_timeout, default 75 s; "
                 "haproxy timeout http-keep-alive, else timeout client; redis timeout, default "
                 "0: never; Apache KeepAliveTimeout, 5 s; Node.js server.keepAliveTimeout, 5 s)")
    return [
        code_fix(f"let the pool close idle connections before the server does: its idle "
                 f"timeout / max idle time {below} (Go http.Transport.IdleConnTimeout, "
                 "HikariCP idleTimeout and maxLifetime, Apache HttpClient "
                 "evictIdleConnections, OkHttp ConnectionPool keepAliveDuration, redis-py "
                 "health_check_interval)"),
        code_fix("validate a connection on checkout and discard it when the server has "
                 "closed it (HikariCP does by default; Apache HttpClient "
                 "validateAfterInactivity; urllib3 checks on checkout), and retry an "
                 "idempotent request once on a reset"),
        code_fix("close idle connections when the client goes quiet (Go "
                 "Transport.CloseIdleConnections(), urllib3 PoolManager.clear(), requests "
                 "Session.close()), and reuse one pool: a pool made per request and dropped "
                 "keeps its CLOSE_WAIT sockets until it is garbage-collected"),
    ]


def _age_text(s: float) -> str:
    """seconds() with a decimal under 10 s: a young socket is '0.4s' old, not '0s'."""
    return f"{s:.1f}s" if s < 10 else seconds(s)


def _young(netns: str, pid: int | None, comm: str, side: str, pile: CloseWaitGroup,
           stuck_age: float) -> Finding:
    """CLOSE_WAIT too young to judge: said, not silent (info)."""
    oldest = pile.young_max
    client = side == sides.CLIENT
    where = pile.where  # every socket of the pile is young here
    evidence = [ev("young_close_wait_sockets", pile.young, SOCK_DIAG,
                   f"CLOSE_WAIT for less than {seconds(stuck_age)} (--min-age)"),
                ev("oldest_age_s", round(oldest, 1), TCP_INFO, "lower bound, last_ack_recv"),
                ev("destinations" if client else "local_ports", top(where), SOCK_DIAG)]
    if client:
        port, peer = pile.young_rport.single, pile.young_service.single
    else:
        port, peer = pile.young_lport.single, None
    return Finding(
        id="close-wait-leak", severity="info", cause=CAUSE,
        title=(f"{who(pid, comm)}{' (the client)' if client else ''} holds "
               f"{plural(pile.young, 'CLOSE_WAIT socket')} younger than "
               f"{seconds(stuck_age)}, oldest {_age_text(oldest)}: not yet judged; run again, "
               "or lower --min-age"),
        subject=subject(netns, pid, comm, port, direction=pile.direction, peer=peer),
        evidence=evidence, fixes=[],
        why="A process that closes its sockets passes through CLOSE_WAIT for a moment; only "
            "sockets that stay there are a leak. These are younger than the age threshold, "
            "so they are counted, not judged. " + (WHY_CLOSE_WAIT_CLIENT if client
                                                   else WHY_CLOSE_WAIT))


WHY_FD_LEAK = (
    "These file descriptors are TCP sockets whose connection is gone: the socket is in no "
    "socket table of any network namespace and was shut down in both directions (poll "
    "reports POLLHUP and POLLRDHUP) - the kernel closed the connection under the "
    "application (an RST from the peer, keepalive or tcp_retries2 giving up, or "
    "SOCK_DESTROY) and the application has not called close(). A socket that was "
    "created and never connected is not counted: it is not shut down. The connection "
    "state is freed; the descriptor and the socket object are not, and they count "
    "against RLIMIT_NOFILE. This is where a CLOSE_WAIT leak goes when keepalive or a kill "
    "ends it. Only closing the fd frees it: fix the code, or restart the process."
)


def check_fd_leak(ctx: Context) -> list[Finding]:
    hf = ctx.facts
    reason = ctx.unavailable("socket-tables")
    if reason and not hf.stale_socket_fds:
        raise Unavailable(f"socket tables not read: {reason}")
    findings = []
    for entry in hf.stale_socket_fds:
        if not ctx.in_scope(entry.pid, entry.netns):
            continue  # a process outside the namespaces being checked
        tcp_all = [f for f in entry.fds if f.protocol.upper().startswith("TCP")]
        tcp = [f for f in tcp_all if f.hup is True]
        unchecked = sum(1 for f in tcp_all if f.hup is None)
        if not tcp:
            continue
        # no growth here: the history records no stale-fd series (watch.history_db)
        severity = "warning" if len(tcp) >= FD_LEAK_WARN else "info"
        limits = hf.processes.get(entry.pid)
        evidence = [ev("stale_tcp_socket_fds", len(tcp), "/proc/PID/fd",
                       "TCP socket fds in no socket table of any namespace, shut down both "
                       "ways (POLLHUP|POLLRDHUP)"),
                    ev("fds", [f.fd for f in tcp[:20]], "/proc/PID/fd", "first 20")]
        never_connected = sum(1 for f in tcp_all if f.hup is False)
        if never_connected:
            evidence.append(ev("not_shut_down_socket_fds", never_connected, "/proc/PID/fd",
                               "in no table but not shut down (never connected): not counted"))
        if unchecked:
            evidence.append(ev("unchecked_socket_fds", unchecked, "/proc/PID/fd",
                               "in no table; shutdown not readable (pidfd_getfd): not counted"))
        if limits is not None:
            evidence.append(ev("fds_open", limits.fd_count, "/proc/PID/fd"))
            if limits.nofile_soft != UNLIMITED:
                evidence.append(ev("rlimit_nofile_soft", limits.nofile_soft, "/proc/PID/limits"))
        findings.append(Finding(
            id="fd-leak", severity=severity, cause=CAUSE,
            title=f"{who(entry.pid, entry.comm)} keeps {plural(len(tcp), 'fd')} on TCP "
                  "sockets the kernel already closed",
            subject=subject(entry.netns, entry.pid, entry.comm),
            evidence=evidence,
            fixes=[code_fix("close the socket when a read or write fails with ECONNRESET, "
                            "ETIMEDOUT, EPIPE or ECONNABORTED, not only on EOF"),
                   restart_fix(entry.pid, entry.comm)],
            why=WHY_FD_LEAK))
    return findings


def restart_fix(pid: int, comm: str) -> Fix:
    return Fix("restart", f"systemctl restart {comm}.service   # or however {comm} (pid {pid}) "
               "is managed", False, {"pid": pid},
               "the only way to free descriptors another process leaks")


