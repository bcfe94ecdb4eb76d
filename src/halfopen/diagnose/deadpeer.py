"""dead-peer and keepalive-off: the client vanished, or could vanish unnoticed.

dead-peer, per process: ESTABLISHED sockets (peer not on this host) where
  - the retransmit timer runs, tcp_info.retransmits or backoff >= MIN_RETRANS,
    and no ACK came for NO_ACK_S (last_ack_recv); or
  - keepalive probes go unanswered: keepalive timer, tcp_info.probes >= MIN_PROBES.
  warning; critical from CRITICAL_COUNT sockets in one process.

Both split each process's sockets by side (Socket.direction): inbound, this host
  is the server and its clients vanished; outbound, it is the client and the
  service (named ip:port) stopped answering. Each side gets its own finding, its
  fix on that side: the server's keepalive, or the client's keepalive, timeouts
  and pool. Unknown direction is judged as the server's side, without saying so.

keepalive-off, per process: ESTABLISHED sockets (peer not on this host) with
  no timer at all (so no keepalive timer: SO_KEEPALIVE is off) idle for at
  least IDLE_S in both directions (tcp_info last_data_recv, last_data_sent,
  last_ack_recv). info; warning from WARN_COUNT sockets in one process.
"""

from __future__ import annotations

from collections.abc import Callable

from ..model.finding import Evidence, Finding, Fix
from ..model.socket import INBOUND, OUTBOUND, TIMER_KEEPALIVE, TIMER_OFF, TIMER_ON, Socket
from ..model.subject import Subject
from . import keepalive_target, sides, traced
from .bounded import Distinct, Keys
from .common import (
    SOCK_DIAG,
    TCP_INFO,
    code_fix,
    ev,
    is_local_peer,
    keepalive_fix,
    kill_fix,
    plural,
    seconds,
    subject,
    sysctl_fix,
    top,
    who,
)
from .context import Context, Options
from .keepalive_target import Probing, SocketsProbing, summarize
from .middlebox import FLOW
from .tally import ESTABLISHED, OwnerGroups, idle_ms

MIN_RETRANS = 3  # three RTO backoffs in a row without an ACK
NO_ACK_S = 30
MIN_PROBES = 2  # one lost probe is loss; two in a row is a silent peer
CRITICAL_COUNT = 100
IDLE_S = 600
WARN_COUNT = 10

RETRIES2_SUGGESTED = 8  # ~100 s: RFC 1122's minimum R2 for data, and far below 15's ~15 min
CAUSE = "client vanished"

TCP_RTO_MIN_S = 0.2
TCP_RTO_MAX_S = 120.0


def retries_timeout_s(retries: int) -> float:
    """How long the kernel retransmits before giving up (tcp_model_timeout, rto_base 200 ms).

    >>> round(retries_timeout_s(15), 1), round(retries_timeout_s(8), 1)
    (924.6, 102.2)
    """
    thresh = 9  # ilog2(TCP_RTO_MAX / TCP_RTO_MIN)
    retries = max(retries, 0)  # proc_dointvec takes -1; the kernel's boundary is unsigned
    if retries <= thresh:
        return ((2 << retries) - 1) * TCP_RTO_MIN_S
    return ((2 << thresh) - 1) * TCP_RTO_MIN_S + (retries - thresh) * TCP_RTO_MAX_S


def flow_limit_s(ctx: Context) -> float | None:
    """The shortest idle timeout of the flow middleboxes declared (--middlebox): the
    limit a keepalive cure must beat; None when none is declared."""
    limits = [mb.idle_timeout_s for mb in ctx.options.middleboxes if mb.kind == FLOW]
    return min(limits) if limits else None


def host_probing(ctx: Context, netns: str) -> Probing:
    """The namespace's default keepalive (its sysctls; the kernel's defaults unread)."""
    return keepalive_target.host_default(
        ctx.tunables(netns) if ctx.snapshot.host_facts is not None else None)


def sockets_probing(ctx: Context, pid: int | None, host: Probing) -> SocketsProbing | None:
    """What the process's sockets read (collect.keepalive_sample) do; None unread."""
    proc = ctx.snapshot.processes.get(pid) if pid is not None else None
    return summarize(proc.keepalive, host) if proc is not None else None


def keepalive_cure(ctx: Context, pid: int, limit_s: float | None, seen: SocketsProbing | None,
                   filter_words: str, why: str, user_timeout_ms: int | None = None) -> list[Fix]:
    """The retrofit for `pid`'s sockets, or none when they already probe fast enough:
    never slower than a socket's own (keepalive_target.wanted against the fastest
    socket read), inside the middlebox's limit when one is declared."""
    if seen is not None and seen.off == 0 and seen.slowest is not None:
        target = keepalive_target.wanted(limit_s, seen.slowest)
        if target is None:
            return []  # every socket read already finds a dead peer soon enough
    want = keepalive_target.wanted(limit_s, seen.fastest if seen is not None else None)
    if want is None:
        if seen is None or seen.fastest is None:
            return []  # no keepalive can beat the limit: the code fix says so
        want = seen.fastest  # the process's own best, onto its sockets that lack it
    return [keepalive_fix(pid, filter_words, want.idle, want.interval, want.count,
                          user_timeout_ms=user_timeout_ms, why=why)]


WHY_DEAD_PEER = (
    "A peer that loses power, is unplugged or sits behind a firewall that now drops its "
    "packets sends nothing: no FIN, no RST. Our socket stays ESTABLISHED. While we have "
    "unacknowledged data, the kernel retransmits with exponential backoff and gives up "
    "only after tcp_retries2 retransmissions (default 15: about 15 minutes) - or after "
    "TCP_USER_TIMEOUT if the application set it. Keepalive stands aside while data is "
    "unacknowledged; when the socket is idle, only keepalive probes find the dead peer, "
    "after tcp_keepalive_time + probes x interval. Until then the process's reads and "
    "writes block or time out in its own code, and the socket holds an fd and buffers. "
    "These sockets are not CLOSE_WAIT: no FIN ever arrived."
)

WHY_KEEPALIVE_OFF = (
    "These connections are idle and have no keepalive timer (SO_KEEPALIVE is off). If the "
    "peer vanished - power loss, a NAT or load balancer that forgot the flow - nothing "
    "would ever tell this host: an idle socket with no unacknowledged data sends nothing, "
    "so neither retransmission nor tcp_retries2 applies, and the socket stays ESTABLISHED "
    "forever. Only SO_KEEPALIVE (with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT) or an application "
    "heartbeat detects that. Raising or lowering net.ipv4.tcp_keepalive_time changes "
    "nothing here: it applies only to sockets that enabled SO_KEEPALIVE."
)


def _retransmitting(s, no_ack_s: float) -> bool:
    ti = s.tcp_info
    if s.timer != TIMER_ON:
        return False
    if ti is None:
        return s.timer_retrans >= MIN_RETRANS
    return max(ti.retransmits, ti.backoff) >= MIN_RETRANS and ti.last_ack_recv / 1000 >= no_ack_s


def _probes_unanswered(s) -> bool:
    if s.timer != TIMER_KEEPALIVE:
        return False
    probes = s.tcp_info.probes if s.tcp_info is not None else s.timer_retrans
    return probes >= MIN_PROBES


def _idle_without_keepalive(s: Socket, idle_s: float) -> bool:
    if s.timer != TIMER_OFF:
        return False
    idle = idle_ms(s)
    return idle is not None and idle / 1000 >= idle_s


class PeerState(OwnerGroups):
    """What dead-peer or keepalive-off keeps of the dump: each owner's ESTABLISHED
    sockets to a peer off this host that `hit` picks, per side (PeerGroup)."""

    states = (ESTABLISHED,)

    def __init__(self, rule_id: str, age_s: float, hit: Callable[[Socket, float], bool]) -> None:
        super().__init__()
        self.rule_id, self.age_s, self._hit = rule_id, age_s, hit

    def add(self, s: Socket) -> None:
        # the peer on this host cannot vanish unseen
        if self._hit(s, self.age_s) and not is_local_peer(s):
            self.group(s, PeerGroup).add(s, s.direction == OUTBOUND)

    def notes(self) -> list[str]:
        return self.overflow_notes(self.rule_id)


def dead_peer_state(options: Options) -> PeerState:
    return PeerState("dead-peer", options.age(NO_ACK_S),
                     lambda s, no_ack_s: _retransmitting(s, no_ack_s) or _probes_unanswered(s))


def keepalive_off_state(options: Options) -> PeerState:
    return PeerState("keepalive-off", options.age(IDLE_S), _idle_without_keepalive)


class PeerGroup:
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

    @property
    def in_flight(self) -> bool:
        """Data is unacknowledged: retransmission, not keepalive, finds the dead peer."""
        return self.retrans > 0 or self.unacked > 0

    def overflowed(self) -> bool:
        return self.peers.overflowed or self.ports.overflowed


def check_dead_peer(ctx: Context) -> list[Finding]:
    state: PeerState = ctx.table.rule("dead-peer")
    no_ack = state.age_s
    findings = []
    for (netns, pid, comm), group in state.by_size():
        for side, part in group.sides():
            assert isinstance(part, PeerGroup)
            findings.append(_dead_peer(ctx, netns, pid, comm, side, part, no_ack))
    trace = ctx.traced()
    if trace is not None:
        findings = _with_trace(trace, findings)
    return findings


WHY_GIVEUPS = (
    "The kernel itself ended these connections: keepalive probes went unanswered (it "
    "resets the connection, reason tcp_keepalive_timeout), or data went unacknowledged "
    "through every retransmission (tcp_retries2, ~15 minutes by default, or the socket's "
    "TCP_USER_TIMEOUT). Either way the peer had vanished: powered off, unplugged, or cut "
    "off by a firewall that drops its packets. Keepalive giving up is the cure working; "
    "retransmission giving up means the application waited minutes on a dead peer.")


def _with_trace(trace, findings: list[Finding]) -> list[Finding]:
    """doctor --trace: the owner's give-ups in the window on its dead-peer findings; an
    owner with give-ups and no such finding (its dead sockets are gone by now) gets
    one of its own: info for keepalive, warning for retransmission give-ups."""
    named = set()
    for f in findings:
        pid = f.subject.pid
        row = trace.owner(pid) if pid is not None else None
        if row is not None and traced.giveups(row):
            named.add(pid)
            f.evidence += traced.giveup_evidence(row, trace.window_s)
    for row in trace.owners:
        if row.pid is None or row.pid in named or not traced.giveups(row):
            continue
        comm = row.comm or "?"
        parts = []
        if row.keepalive_giveups:
            parts.append(f"keepalive gave up on {plural(row.keepalive_giveups, 'connection')}")
        if row.retransmit_giveups:
            parts.append(f"retransmission gave up on {plural(row.retransmit_giveups, 'connection')}")
        peers = list(row.giveup_peers)
        findings.append(Finding(
            id="dead-peer", severity="warning" if row.retransmit_giveups else "info", cause=CAUSE,
            title=f"{who(row.pid, comm)}: {' and '.join(parts)} in the trace window"
                  + (f" ({peers[0]})" if len(peers) == 1 else f" ({plural(len(peers), 'peer')})"),
            subject=subject(row.netns or "host", row.pid, comm),
            evidence=traced.giveup_evidence(row, trace.window_s),
            fixes=[code_fix(SERVER_DEAD_PEER_FIX)] if row.retransmit_giveups else [],
            why=WHY_GIVEUPS))
    return findings


def _dead_peer(ctx: Context, netns: str, pid: int | None, comm: str, side: str,
               group: PeerGroup, no_ack: float) -> Finding:
    client = side == sides.CLIENT
    tun = ctx.tunables(netns) if ctx.snapshot.host_facts is not None else None
    retries2 = tun.tcp_retries2 if tun is not None and tun.tcp_retries2 is not None else 15
    host = host_probing(ctx, netns)
    seen = sockets_probing(ctx, pid, host)
    evidence = _dead_peer_evidence(group, client, no_ack, retries2)
    if seen is not None:
        evidence.append(ev("keepalive_read", seen.text(host), "getsockopt (pidfd_getfd)",
                           "TCP_KEEPIDLE/INTVL/CNT read from the process's sockets"))
    one = next(iter(group.peers)) if len(group.peers) == 1 else None
    title = _dead_peer_title(pid, comm, client, group, one)
    if seen is not None:
        title += f"; keepalive {seen.text(host)}"
    fixes = _end_and_cure(ctx, pid, client, group, seen) if pid is not None else []
    if retries2 > RETRIES2_SUGGESTED and group.in_flight:
        fixes.append(sysctl_fix("net.ipv4.tcp_retries2", RETRIES2_SUGGESTED, netns,
                                f"give up on unacknowledged data after ~"
                                f"{seconds(retries_timeout_s(RETRIES2_SUGGESTED))} instead "
                                f"of ~{seconds(retries_timeout_s(retries2))}, host-wide"))
    if seen is not None and seen.off == 0 and not client:
        fixes.append(code_fix(SERVER_KEEPALIVE_SET_FIX))
    else:
        fixes.append(code_fix(CLIENT_DEAD_PEER_FIX if client else SERVER_DEAD_PEER_FIX))
    return Finding(
        id="dead-peer", severity="critical" if group.count >= CRITICAL_COUNT else "warning",
        cause=CAUSE, title=title, subject=_subject(netns, pid, comm, client, group, one),
        evidence=evidence, fixes=fixes,
        why=WHY_DEAD_PEER + (WHY_CLIENT_SIDE if client else ""))


def _dead_peer_evidence(group: PeerGroup, client: bool, no_ack: float, retries2: int
                        ) -> list[Evidence]:
    evidence = [ev("dead_peer_sockets", group.count, SOCK_DIAG, _side_note(group)),
                ev("retransmitting", group.retrans, SOCK_DIAG,
                   f">= {MIN_RETRANS} retransmissions, no ACK for >= {seconds(no_ack)}"),
                ev("keepalive_probes_unanswered", group.probing, SOCK_DIAG,
                   f">= {MIN_PROBES} probes out")]
    if group.infos:
        evidence += [
            ev("max_retransmits", group.max_retransmits, TCP_INFO),
            ev("oldest_no_ack_s", round(group.max_ack_ms / 1000), TCP_INFO,
               "last_ack_recv: time since the peer last acknowledged anything"),
        ]
    return evidence + [
        ev("unacked_bytes", group.unacked, SOCK_DIAG, "Send-Q summed"),
        ev("services" if client else "peers", top(group.peers), SOCK_DIAG,
           "remote service ip:port, count" if client else ""),
        ev("tcp_retries2", retries2, "/proc/sys/net/ipv4/tcp_retries2",
           f"gives up after ~{seconds(retries_timeout_s(retries2))} of retransmission")]


def _dead_peer_title(pid: int | None, comm: str, client: bool, group: PeerGroup,
                     one: str | None) -> str:
    """Who stopped answering: the services this client connected to, or the server's
    clients (`one`: the only peer, when there is one)."""
    if client:
        return (f"{who(pid, comm)} is the client: {plural(group.count, 'connection')} to "
                f"{one or plural(len(group.peers), 'service')} that stopped answering")
    return (f"{who(pid, comm)}{_server_word(group)}: "
            f"{plural(group.count, 'ESTABLISHED socket')} to a "
            f"{'client' if _inbound(group) else 'peer'} that stopped answering"
            + (f" ({one})" if one else ""))


def _end_and_cure(ctx: Context, pid: int, client: bool, group: PeerGroup,
                  seen: SocketsProbing | None) -> list[Fix]:
    """Kill the sockets to the dead peers now; retrofit keepalive (and TCP_USER_TIMEOUT
    where data is unacknowledged) onto the process's sockets."""
    dsts = sides.dst_filter(list(group.peers))
    flt = f"state established pid {pid}" + (f" and ( {dsts} )" if dsts else "")
    in_flight = group.in_flight
    return [kill_fix(flt, "end them now: RST to the dead peer (harmless), the "
                          "process's next read fails with ECONNABORTED"),
            *keepalive_cure(
                ctx, pid, flow_limit_s(ctx), seen, "state established",
                user_timeout_ms=30000 if in_flight else None,
                why="keepalive for idle sockets" + (" and TCP_USER_TIMEOUT 30 s for sockets with "
                                                   "unacknowledged data" if in_flight else "")
                    + f", on this {'client' if client else 'server'}'s sockets")]

CLIENT_DEAD_PEER_FIX = (
    "this process is the client: bound every request with a timeout, set TCP_USER_TIMEOUT "
    "and SO_KEEPALIVE on the client's connections (JDBC socketTimeout and tcpKeepAlive=true, "
    "Go net.Dialer.KeepAlive, urllib3/requests socket_options and timeout=), and give the "
    "pool a max connection lifetime so a dead connection is dropped, not reused")
SERVER_DEAD_PEER_FIX = (
    "set SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT and TCP_USER_TIMEOUT on the "
    "accepted connections (nginx: listen ... so_keepalive=60s:10s:6), or use an application "
    "heartbeat with a read deadline")
SERVER_KEEPALIVE_SET_FIX = (
    "SO_KEEPALIVE is already on for the sockets read: these peers are being probed and "
    "will be reset when the probes run out; to find them sooner lower the process's own "
    "keepalive setting (redis: tcp-keepalive; nginx: listen ... so_keepalive=), or set "
    "TCP_USER_TIMEOUT for sockets that send")
WHY_CLIENT_SIDE = (
    " This host is the client here: it connected out to the service named above, so the "
    "fix belongs in the client and its connection pool, not in the server.")


def _inbound(group: PeerGroup) -> bool:
    return group.inbound


def _server_word(group: PeerGroup) -> str:
    """', the server' when every socket is inbound; nothing when the direction is unknown."""
    return ", the server" if _inbound(group) else ""


def _side_note(group: PeerGroup) -> str:
    if group.direction == OUTBOUND:
        return "this host is the client: it connected out"
    return "this host is the server: accepted connections" if _inbound(group) else ""


def _subject(netns: str, pid: int | None, comm: str, client: bool, group: PeerGroup,
             one: str | None) -> Subject:
    # group.port: the remote port on the client's side, the local port on the server's
    return subject(netns, pid, comm, group.port.single,
                   direction=OUTBOUND if client else (INBOUND if _inbound(group) else None),
                   peer=one if client else None)


def check_keepalive_off(ctx: Context) -> list[Finding]:
    state: PeerState = ctx.table.rule("keepalive-off")
    idle_s = state.age_s
    findings = []
    for (netns, pid, comm), group in state.by_size():
        for side, part in group.sides():
            assert isinstance(part, PeerGroup)
            findings.append(_keepalive_off(ctx, netns, pid, comm, side, part, idle_s))
    return findings


def _keepalive_off(ctx: Context, netns: str, pid: int | None, comm: str, side: str, group: PeerGroup,
                   idle_s: float) -> Finding:
    client = side == sides.CLIENT
    host = host_probing(ctx, netns)
    seen = sockets_probing(ctx, pid, host)
    idle_max = group.max_idle_s  # every hit has an idle time
    peers, ports = group.peers, group.ports
    one = next(iter(peers)) if len(peers) == 1 else None
    severity = "warning" if group.count >= WARN_COUNT else "info"
    fixes = []
    if pid is not None:
        fixes += keepalive_cure(ctx, pid, flow_limit_s(ctx), seen, "state established",
                                why="retrofit TCP keepalive onto this "
                                    f"{'client' if client else 'server'}'s idle sockets "
                                    "(pidfd_getfd + setsockopt, no restart)")
    fixes.append(code_fix(CLIENT_KEEPALIVE_FIX if client else SERVER_KEEPALIVE_FIX))
    if client:
        title = (f"{who(pid, comm)} is the client: {plural(group.count, 'idle connection')} to "
                 f"{one or plural(len(peers), 'service')} without keepalive, idle up to "
                 f"{seconds(idle_max)}")
    else:
        title = (f"{who(pid, comm)}{_server_word(group)}: "
                 f"{plural(group.count, 'idle connection')} without keepalive, idle up to "
                 f"{seconds(idle_max)}")
    return Finding(
        id="keepalive-off", severity=severity, cause=CAUSE, title=title,
        subject=(_subject(netns, pid, comm, True, group, one) if client else
                 subject(netns, pid, comm, ports.most_common(1)[0][0] if len(ports) == 1
                         else None, direction=INBOUND if _inbound(group) else None)),
        evidence=[ev("idle_sockets_without_keepalive", group.count, SOCK_DIAG,
                     f"ESTABLISHED, no timer, idle >= {seconds(idle_s)}"
                     + (f"; {_side_note(group)}" if _side_note(group) else "")),
                  ev("max_idle_s", round(idle_max), TCP_INFO,
                     "min of last_data_recv, last_data_sent, last_ack_recv"),
                  ev("services" if client else "peers", top(peers), SOCK_DIAG),
                  ev("local_ports", top(ports), SOCK_DIAG)]
                 + ([ev("keepalive_read", seen.text(host), "getsockopt (pidfd_getfd)",
                        "TCP_KEEPIDLE/INTVL/CNT read from the process's sockets")] if seen else []),
        fixes=fixes, why=WHY_KEEPALIVE_OFF + (WHY_CLIENT_SIDE if client else ""))


CLIENT_KEEPALIVE_FIX = (
    "this process is the client: enable SO_KEEPALIVE on its pooled connections with "
    "TCP_KEEPIDLE below every NAT/firewall/LB idle timeout on the path (e.g. 60 s), "
    "TCP_KEEPINTVL 10 s, TCP_KEEPCNT 6 (Go net.Dialer.KeepAlive; JDBC tcpKeepAlive=true; "
    "urllib3 socket_options), or give the pool an idle timeout shorter than those")
SERVER_KEEPALIVE_FIX = (
    "enable SO_KEEPALIVE on the accepted connections and set TCP_KEEPIDLE below every "
    "NAT/firewall/LB idle timeout on the path (e.g. 60 s), TCP_KEEPINTVL 10 s, TCP_KEEPCNT 6 "
    "(nginx: listen ... so_keepalive=60s:10s:6), or close clients idle longer than a timeout")
