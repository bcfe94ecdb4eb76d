"""dead-peer and keepalive-off: the client vanished, or could vanish unnoticed.

dead-peer, per process: ESTABLISHED sockets (peer not on this host) where
  - the retransmit timer runs, tcp_info.retransmits or backoff >= MIN_RETRANS,
    and no ACK came for NO_ACK_S (last_ack_recv); or
  - keepalive probes go unanswered: keepalive timer, tcp_info.probes >= MIN_PROBES.
  warning; critical from CRITICAL_COUNT sockets in one process.

keepalive-off, per process: ESTABLISHED sockets (peer not on this host) with
  no timer at all (so no keepalive timer: SO_KEEPALIVE is off) idle for at
  least IDLE_S in both directions (tcp_info last_data_recv, last_data_sent,
  last_ack_recv). info; warning from WARN_COUNT sockets in one process.
"""

from __future__ import annotations

from collections import Counter

from ..model.finding import Finding
from ..model.states import TcpState
from .common import (
    SOCK_DIAG,
    TCP_INFO,
    by_owner,
    code_fix,
    ev,
    keepalive_fix,
    kill_fix,
    plural,
    seconds,
    subject,
    sysctl_fix,
    top,
    who,
)
from .context import Context

MIN_RETRANS = 3  # three RTO backoffs in a row without an ACK
NO_ACK_S = 30
MIN_PROBES = 2  # one lost probe is loss; two in a row is a silent peer
CRITICAL_COUNT = 100
IDLE_S = 600
WARN_COUNT = 10

TIMER_ON, TIMER_KEEPALIVE, TIMER_OFF = 1, 2, 0
RETRIES2_SUGGESTED = 8  # ~100 s: RFC 1122's minimum R2 for data, and far below 15's ~15 min
ESTABLISHED = int(TcpState.ESTABLISHED)
CAUSE = "client vanished"

TCP_RTO_MIN_S = 0.2
TCP_RTO_MAX_S = 120.0


def retries_timeout_s(retries: int) -> float:
    """How long the kernel retransmits before giving up (tcp_model_timeout, rto_base 200 ms).

    >>> round(retries_timeout_s(15), 1), round(retries_timeout_s(8), 1)
    (924.6, 102.2)
    """
    thresh = 9  # ilog2(TCP_RTO_MAX / TCP_RTO_MIN)
    if retries <= thresh:
        return ((2 << retries) - 1) * TCP_RTO_MIN_S
    return ((2 << thresh) - 1) * TCP_RTO_MIN_S + (retries - thresh) * TCP_RTO_MAX_S


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


def check_dead_peer(ctx: Context) -> list[Finding]:
    no_ack = ctx.age(NO_ACK_S)
    hit = [s for s in ctx.remote_established()
           if _retransmitting(s, no_ack) or _probes_unanswered(s)]
    findings = []
    for (netns, pid, comm), group in sorted(by_owner(hit).items(), key=lambda kv: -len(kv[1])):
        retrans = [s for s in group if s.timer == TIMER_ON]
        probing = [s for s in group if s.timer == TIMER_KEEPALIVE]
        infos = [s.tcp_info for s in group if s.tcp_info is not None]
        peers = Counter(f"{s.peer_addr}" for s in group)
        tun = None
        if ctx.snapshot.host_facts is not None:
            tun = ctx.tunables(netns)
        retries2 = tun.tcp_retries2 if tun is not None and tun.tcp_retries2 is not None else 15
        evidence = [ev("dead_peer_sockets", len(group), SOCK_DIAG),
                    ev("retransmitting", len(retrans), SOCK_DIAG,
                       f">= {MIN_RETRANS} retransmissions, no ACK for >= {seconds(no_ack)}"),
                    ev("keepalive_probes_unanswered", len(probing), SOCK_DIAG,
                       f">= {MIN_PROBES} probes out")]
        if infos:
            evidence += [
                ev("max_retransmits", max(i.retransmits for i in infos), TCP_INFO),
                ev("oldest_no_ack_s", round(max(i.last_ack_recv for i in infos) / 1000), TCP_INFO,
                   "last_ack_recv: time since the peer last acknowledged anything"),
            ]
        unacked = sum(s.send_q for s in group)
        evidence += [ev("unacked_bytes", unacked, SOCK_DIAG, "Send-Q summed"),
                     ev("peers", top(peers), SOCK_DIAG),
                     ev("tcp_retries2", retries2, "/proc/sys/net/ipv4/tcp_retries2",
                        f"gives up after ~{seconds(retries_timeout_s(retries2))} of retransmission")]
        severity = "critical" if len(group) >= CRITICAL_COUNT else "warning"
        title = (f"{who(pid, comm)}: {plural(len(group), 'ESTABLISHED socket')} to a peer that "
                 "stopped answering")
        if len(peers) == 1:
            title += f" ({next(iter(peers))})"
        fixes = []
        if pid is not None:
            dsts = " or ".join(f"dst {p}" for p in list(peers)[:5])
            flt = f"state established pid {pid}" + (f" and ( {dsts} )" if len(peers) <= 5 else "")
            fixes.append(kill_fix(flt, "end them now: RST to the dead peer (harmless), the "
                                       "process's next read fails with ECONNABORTED"))
            fixes.append(keepalive_fix(pid, "state established", user_timeout_ms=30000,
                                       why="keepalive for idle sockets and TCP_USER_TIMEOUT "
                                           "30 s for sockets with unacknowledged data"))
        if retries2 > RETRIES2_SUGGESTED:
            fixes.append(sysctl_fix("net.ipv4.tcp_retries2", RETRIES2_SUGGESTED, netns,
                                    f"give up on unacknowledged data after ~"
                                    f"{seconds(retries_timeout_s(RETRIES2_SUGGESTED))} instead "
                                    f"of ~{seconds(retries_timeout_s(retries2))}, host-wide"))
        fixes.append(code_fix("set SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT and "
                              "TCP_USER_TIMEOUT on long-lived connections, or use an "
                              "application heartbeat with a read deadline"))
        findings.append(Finding(
            id="dead-peer", severity=severity, cause=CAUSE, title=title,
            subject=subject(netns, pid, comm,
                            group[0].local_port if len({s.local_port for s in group}) == 1 else None),
            evidence=evidence, fixes=fixes, why=WHY_DEAD_PEER))
    return findings


def _idle_ms(s) -> int | None:
    ti = s.tcp_info
    if ti is None:
        return None
    return min(ti.last_data_recv, ti.last_data_sent, ti.last_ack_recv)


def check_keepalive_off(ctx: Context) -> list[Finding]:
    idle_s = ctx.age(IDLE_S)
    hit = []
    for s in ctx.remote_established():
        if s.timer != TIMER_OFF:
            continue
        idle = _idle_ms(s)
        if idle is not None and idle / 1000 >= idle_s:
            hit.append(s)
    findings = []
    for (netns, pid, comm), group in sorted(by_owner(hit).items(), key=lambda kv: -len(kv[1])):
        idles = [(_idle_ms(s) or 0) / 1000 for s in group]  # every hit has an idle time
        peers = Counter(s.peer_addr for s in group)
        ports = Counter(s.local_port for s in group)
        severity = "warning" if len(group) >= WARN_COUNT else "info"
        fixes = []
        if pid is not None:
            fixes.append(keepalive_fix(pid, "state established"))
        fixes.append(code_fix("enable SO_KEEPALIVE on long-lived connections and set "
                              "TCP_KEEPIDLE below every NAT/firewall/LB idle timeout on the path "
                              "(e.g. 60 s), TCP_KEEPINTVL 10 s, TCP_KEEPCNT 6"))
        findings.append(Finding(
            id="keepalive-off", severity=severity, cause=CAUSE,
            title=f"{who(pid, comm)}: {plural(len(group), 'idle connection')} without keepalive, "
                  f"idle up to {seconds(max(idles))}",
            subject=subject(netns, pid, comm, ports.most_common(1)[0][0] if len(ports) == 1 else None),
            evidence=[ev("idle_sockets_without_keepalive", len(group), SOCK_DIAG,
                         f"ESTABLISHED, no timer, idle >= {seconds(idle_s)}"),
                      ev("max_idle_s", round(max(idles)), TCP_INFO,
                         "min of last_data_recv, last_data_sent, last_ack_recv"),
                      ev("peers", top(peers), SOCK_DIAG),
                      ev("local_ports", top(ports), SOCK_DIAG)],
            fixes=fixes, why=WHY_KEEPALIVE_OFF))
    return findings
