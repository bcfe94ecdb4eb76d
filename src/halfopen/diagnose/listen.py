"""syn-flood and accept-queue-overflow, kept apart and attributed to a listener.

Both end in dropped connection attempts, and the kernel's own words mix them
up: a listener whose accept queue is full also fills its SYN queue (the
handshake's last ACK is dropped, the request stays), so the kernel prints
"Possible SYN flooding on port N" and sends SYN cookies for it. We decide by
the listener's own queues:

accept-queue-overflow, per LISTEN socket (Recv-Q = accept queue, Send-Q = backlog):
  critical  queue full (Recv-Q > backlog: the kernel's sk_acceptq_is_full) and
            TcpExt.ListenOverflows grew during the window
  warning   queue full, or at least FULL_RATIO of a backlog >= MIN_BACKLOG;
            or ListenOverflows grew faster than OVERFLOWS_PER_MIN with no listener
            full now (not attributable: reported for the namespace)

syn-flood, per listener whose accept queue is less than half full:
  The SYN queue is full when SYN_RECV to the port reaches syn_queue_limit():
  the listener's backlog (Send-Q = min(listen() backlog, somaxconn), as
  inet_csk_reqsk_queue_is_full compares it), and with tcp_syncookies=0 also
  3/4 of tcp_max_syn_backlog. Any backlog, 1 to 4096.
  critical  SYN queue full and, during the window, SYNs answered with cookies
            (TcpExt.SyncookiesSent) or dropped (TcpExt.TCPReqQFullDrop)
  warning   SYN queue full with no overflow seen (or no window), or SYN_RECV
            >= max(MIN_SYN_RECV, SYN_RATIO x backlog)
  info      a "Possible SYN flooding" kernel line for the port in the last hour
            and nothing now
  The finding names the port, its owner and whether syncookies are on.
  Namespace-wide (no listener full now): cookies sent (warning) or SYNs
  dropped (critical) during the window.
"""

from __future__ import annotations

from halfopen.records import record

from ..model.finding import Finding, Fix
from ..model.nginx import NGINX_DEFAULT_CONF
from ..model.socket import INBOUND, Socket
from ..model.states import TcpState
from .common import SOCK_DIAG, code_fix, config_fix, ev, owner, plural, subject, sysctl_fix, top, who
from .context import Context
from .tally import SynGroup

NO_SYN_RECV = SynGroup()  # a port without SYN_RECV sockets (never added to)

FULL_RATIO = 0.8
MIN_BACKLOG = 10
OVERFLOWS_PER_MIN = 1.0  # netdata's alarm, used only when no listener is full now
MIN_SYN_RECV = 64
SYN_RATIO = 0.5
KLOG_RECENT_S = 3600
BIG_BACKLOG = 1024  # below this, a larger listen() backlog is worth saying

LISTEN = int(TcpState.LISTEN)

WHY_ACCEPT = (
    "The kernel completes the TCP handshake by itself and puts the connection in the "
    "listener's accept queue; the application takes it out with accept(). This queue is "
    "full: the process does not call accept() fast enough (all workers busy, blocked, or "
    "too few), or its backlog is too small for bursts. When the queue is full the kernel "
    "drops new SYNs and the handshake's final ACK (TcpExt.ListenOverflows and "
    "ListenDrops count them); clients see slow connects or timeouts, and from the "
    "client's side a connection can look ESTABLISHED while the server never accepted "
    "it. The SYN queue then fills too, so the kernel may print \"Possible SYN flooding "
    "on port N\" and send SYN cookies: that line is a side effect here, not an attack. "
    "A bigger backlog absorbs bursts but does not fix a process that cannot keep up; "
    "tcp_abort_on_overflow=1 only turns the timeouts into resets."
)

WHY_SYN = (
    "Many handshakes to this listener are half done: the kernel answered the SYN with a "
    "SYN-ACK and the client never sent the final ACK. That is the signature of a SYN "
    "flood (spoofed sources never answer) or of clients whose ACKs are lost. Each "
    "half-open request waits in the SYN queue for tcp_synack_retries retransmissions "
    "(default 5: about a minute). When the queue is full the kernel sends SYN cookies "
    "(tcp_syncookies=1), which keep legitimate clients working without queue space, or "
    "drops SYNs if cookies are off. The application's accept queue is not full, so the "
    "application is not the bottleneck."
)


def _listeners(ctx: Context) -> list[Socket]:
    return ctx.table.listeners


def _full(s) -> bool:
    return s.recv_q > s.send_q


def _near_full(s) -> bool:
    return _full(s) or (s.send_q >= MIN_BACKLOG and s.recv_q >= FULL_RATIO * s.send_q)


def _accept_backed_up(s) -> bool:
    """The accept queue is at least half full: its SYN queue holds handshakes that could
    not move on (a completed handshake waits there while the accept queue is full), so a
    full SYN queue there is the application's, not a flood (a flood's accept queue is
    empty: spoofed sources never complete)."""
    return _full(s) or (s.recv_q > 0 and 2 * s.recv_q >= s.send_q)


def _has_rates(ctx: Context) -> bool:
    return ctx.snapshot.host_facts is not None


def _syn_recv_by_port(ctx: Context) -> dict[tuple[str, int], SynGroup]:
    return ctx.table.syn_recv


KLOG_HOST_WIDE = ("the kernel log is the host's: this port's line may come from any network "
                  "namespace with a listener on it")


def _klog_ports(ctx: Context) -> dict[int, list]:
    hf = ctx.snapshot.host_facts
    out: dict[int, list] = {}
    if hf is None:
        return out
    for line in hf.kernel_log:
        if line.kind == "syn-flood" and line.port is not None \
                and ctx.now - line.wall_time <= KLOG_RECENT_S:
            out.setdefault(line.port, []).append(line)
    return out


def check_accept_queue(ctx: Context) -> list[Finding]:
    syn_recv = _syn_recv_by_port(ctx)
    klog = _klog_ports(ctx)
    full = [s for s in _listeners(ctx) if _near_full(s)]
    findings = [_accept_queue_full(ctx, s, syn_recv.get((s.netns, s.local_port), NO_SYN_RECV),
                                   klog.get(s.local_port, []))
                for s in full]
    if _has_rates(ctx):
        findings += _overflowed_unseen(ctx, {s.netns for s in full})
    return findings


def _accept_queue_full(ctx: Context, s: Socket, sr: SynGroup, lines: list) -> Finding:
    """One listener whose accept queue is full or nearly: critical when it is full and
    ListenOverflows grew during the window."""
    who_ = owner(s)
    pid, comm = who_ if who_ else (None, "")
    overflows = ctx.delta(s.netns, "TcpExt.ListenOverflows") if _has_rates(ctx) else None
    full = _full(s)
    evidence = [ev("accept_queue", s.recv_q, SOCK_DIAG, "Recv-Q of the LISTEN socket"),
                ev("backlog", s.send_q, SOCK_DIAG,
                   "Send-Q of the LISTEN socket: min(listen() backlog, somaxconn)")]
    if overflows is not None:
        window = ctx.window_s(s.netns)
        evidence.append(ev("listen_overflows", overflows, "/proc/net/netstat",
                           f"TcpExt.ListenOverflows over the {window:.1f} s window"
                           if window else "TcpExt.ListenOverflows over the window"))
    if sr:
        evidence.append(ev("syn_recv", len(sr), SOCK_DIAG,
                           "half-open handshakes held because the accept queue is full"))
    if lines:
        evidence.append(ev("kernel_log", lines[-1].text, "kernel log",
                           f"{KLOG_HOST_WIDE}; a side effect of a full accept queue, "
                           "not a SYN flood"))
    return Finding(
        id="accept-queue-overflow", severity="critical" if full and overflows else "warning",
        cause="resource exhaustion",
        title=(f"port {s.local_port}: accept queue {'full' if full else 'nearly full'} "
               f"({s.recv_q}/{s.send_q}), {who(pid, comm)} is not accepting fast enough"),
        subject=subject(s.netns, pid, comm, s.local_port, addr=s.local_addr),
        evidence=evidence, fixes=_accept_fixes(ctx, s, comm), why=WHY_ACCEPT)


def _accept_fixes(ctx: Context, s: Socket, comm: str) -> list[Fix]:
    """Accept faster first; then a larger backlog (somaxconn when it caps the listener's,
    nginx's listen backlog, else the application's listen())."""
    fixes = [code_fix("accept faster: more workers/threads, never block the accept loop, "
                      "check what the process is stuck on (py-spy, jstack, gdb, strace -p)")]
    tun = ctx.tunables(s.netns) if _has_rates(ctx) else None
    somaxconn = tun.somaxconn if tun is not None else None
    want = max(4096, s.send_q * 4)
    if somaxconn is not None and s.send_q >= somaxconn:
        fixes.append(sysctl_fix("net.core.somaxconn", want, s.netns,
                                "the backlog is capped by somaxconn; raise it, then restart "
                                "or re-listen with a larger backlog"))
    if comm.startswith("nginx"):
        fixes.append(config_fix(ctx.nginx.fix_path if ctx.nginx else NGINX_DEFAULT_CONF,
                                f"listen {s.local_port} backlog={want};",
                                "nginx's listen backlog (default 511 on Linux)"))
    else:
        fixes.append(code_fix(f"pass a larger backlog to listen() (now {s.send_q}); "
                              "it only absorbs bursts"))
    return fixes


def _overflowed_unseen(ctx: Context, full_ns: set[str]) -> list[Finding]:
    """Namespaces whose accept queues overflowed during the window with no listener full
    now (outside `full_ns`): not attributable to a listener."""
    findings = []
    for ns in ctx.namespaces():
        if ns.netns in full_ns:
            continue
        rate = ctx.rate(ns.netns, "TcpExt.ListenOverflows")
        if rate is not None and rate * 60 > OVERFLOWS_PER_MIN:
            findings.append(Finding(
                id="accept-queue-overflow", severity="warning", cause="resource exhaustion",
                title=f"accept queues overflowed {rate * 60:.1f}/min in netns {ns.netns}; "
                      "no listener is full right now",
                subject=subject(ns.netns),
                evidence=[ev("listen_overflows_per_min", round(rate * 60, 2),
                             "/proc/net/netstat", "TcpExt.ListenOverflows")],
                fixes=[code_fix("run `halfopen doctor --window 30` during the next burst "
                                "to catch the listener while it is full")],
                why=WHY_ACCEPT))
    return findings


def syn_queue_limit(backlog: int, syncookies: int | None, max_syn_backlog: int | None) -> int:
    """How many half-open handshakes a listener holds before new SYNs get a cookie or a drop.

    tcp_conn_request (net/ipv4/tcp_input.c): inet_csk_reqsk_queue_is_full compares the
    request queue with sk_max_ack_backlog, the listener's Send-Q (min(listen() backlog,
    somaxconn), __sys_listen); measured on 6.18, a flooded queue holds backlog + 1
    (the test is qlen > backlog), so "at or above the backlog" is full. With
    tcp_syncookies=0 the last quarter of
    tcp_max_syn_backlog is kept for peers proven alive: an unproven SYN is dropped
    once the queue holds max_syn_backlog - max_syn_backlog/4.

    >>> syn_queue_limit(128, 1, 2048), syn_queue_limit(4096, 0, 2048), syn_queue_limit(5, 0, 128)
    (128, 1536, 5)
    """
    limit = max(backlog, 1)
    if syncookies == 0 and max_syn_backlog:
        limit = min(limit, max_syn_backlog - (max_syn_backlog >> 2))
    return limit


@record
class SynQueue:
    """One listener's SYN queue, measured: what the syn-flood rule grades and renders."""

    netns: str
    port: int
    listener: Socket
    syn_recv: SynGroup
    limit: int  # syn_queue_limit
    syncookies: int | None
    max_syn_backlog: int | None
    cookies: int | None  # TcpExt.SyncookiesSent over the window (namespace-wide)
    drops: int | None  # TcpExt.TCPReqQFullDrop over the window
    klog: list

    @property
    def full(self) -> bool:
        return len(self.syn_recv) >= self.limit

    @property
    def overflowed(self) -> bool:
        """New SYNs were answered with a cookie or dropped during the window."""
        return bool(self.cookies) or bool(self.drops)


def _syn_queue(ctx: Context, netns: str, port: int, lst: Socket, sr: SynGroup, lines: list
               ) -> SynQueue:
    tun = ctx.tunables(netns) if _has_rates(ctx) else None
    cookies_on = tun.tcp_syncookies if tun is not None else None
    msb = tun.tcp_max_syn_backlog if tun is not None else None
    cookies = ctx.delta(netns, "TcpExt.SyncookiesSent") if _has_rates(ctx) else None
    drops = ctx.delta(netns, "TcpExt.TCPReqQFullDrop") if _has_rates(ctx) else None
    return SynQueue(netns, port, lst, sr, syn_queue_limit(lst.send_q, cookies_on, msb),
                    cookies_on, msb, cookies, drops, lines)


def _grade_syn(q: SynQueue) -> str | None:
    n = len(q.syn_recv)
    many = n >= max(MIN_SYN_RECV, SYN_RATIO * max(q.listener.send_q, 1))
    if q.full and q.overflowed:
        return "critical"
    if q.full or many:
        return "warning"
    # a kernel log line alone proves no namespace (the log is the host's; the line
    # names a port): kernel-warning reports it once, host-wide
    return None


def check_syn_flood(ctx: Context) -> list[Finding]:
    findings = []
    syn_recv = _syn_recv_by_port(ctx)
    klog = _klog_ports(ctx)
    listeners: dict[tuple[str, int], Socket] = {}
    for s in _listeners(ctx):
        listeners.setdefault((s.netns, s.local_port), s)
    full_ns = {s.netns for s in listeners.values() if _accept_backed_up(s)}
    reported = set()
    for (netns, port), lst in sorted(listeners.items(), key=lambda kv: kv[0][1]):
        if _accept_backed_up(lst):
            continue  # accept-queue-overflow explains its SYN queue
        q = _syn_queue(ctx, netns, port, lst, syn_recv.get((netns, port), NO_SYN_RECV),
                       klog.get(port, []))
        severity = _grade_syn(q)
        if severity is None:
            continue
        reported.add(netns)
        findings.append(_render_syn(ctx, q, severity))
    if _has_rates(ctx):
        for ns in ctx.namespaces():
            if ns.netns in reported or ns.netns in full_ns:
                continue
            cookies = ctx.delta(ns.netns, "TcpExt.SyncookiesSent") or 0
            drops = ctx.delta(ns.netns, "TcpExt.TCPReqQFullDrop") or 0
            if cookies or drops:
                findings.append(Finding(
                    id="syn-flood", severity="critical" if drops else "warning", cause="SYN flood",
                    title=f"netns {ns.netns}: SYN queues overflowed during the window "
                          f"({cookies} cookies sent, {drops} SYNs dropped); no listener's "
                          "queue is full now",
                    subject=subject(ns.netns),
                    evidence=[ev("syncookies_sent", cookies, "/proc/net/netstat"),
                              ev("syn_queue_full_drops", drops, "/proc/net/netstat")],
                    fixes=_syn_fixes(ctx, ns.netns), why=WHY_SYN))
    return findings


def _render_syn(ctx: Context, q: SynQueue, severity: str) -> Finding:
    sr, lst, port = q.syn_recv, q.listener, q.port
    who_ = owner(lst)
    pid, comm = who_ if who_ else (None, "")
    sources = sr.sources
    evidence = [ev("syn_recv", len(sr), SOCK_DIAG, "half-open handshakes to this port"),
                ev("backlog", lst.send_q, SOCK_DIAG,
                   "Send-Q of the LISTEN socket: min(listen() backlog, somaxconn)"),
                ev("syn_queue_limit", q.limit, "tcp_conn_request",
                   "the SYN queue is full at this many (the backlog; with syncookies off also "
                   "3/4 of tcp_max_syn_backlog)"),
                ev("syn_queue_full", q.full, SOCK_DIAG, "syn_recv >= syn_queue_limit"),
                ev("accept_queue", lst.recv_q, SOCK_DIAG, "not full: the application keeps up"),
                ev("distinct_sources", len(sources), SOCK_DIAG,
                   "many distinct sources suggest spoofing"),
                ev("top_sources", top(sources), SOCK_DIAG)]
    if q.syncookies is not None:
        evidence.append(ev("tcp_syncookies", q.syncookies, "/proc/sys/net/ipv4/tcp_syncookies",
                           "0 off: a full queue drops SYNs; 1: cookies when full; 2: always"))
    if q.cookies is not None:
        evidence.append(ev("syncookies_sent", q.cookies, "/proc/net/netstat",
                           "TcpExt.SyncookiesSent over the window (namespace-wide)"))
    if q.drops is not None:
        evidence.append(ev("syn_queue_full_drops", q.drops, "/proc/net/netstat",
                           "TcpExt.TCPReqQFullDrop over the window (namespace-wide)"))
    if q.klog:
        evidence.append(ev("kernel_log", q.klog[-1].text, "kernel log", KLOG_HOST_WIDE))
    title = (f"port {port}: SYN queue {'full' if q.full else 'filling'} "
             f"({len(sr)}/{q.limit}), {plural(len(sr), 'half-open handshake')} from "
             f"{plural(len(sources), 'source')} ({who(pid, comm)})")
    if q.drops:
        title += f"; {plural(q.drops, 'SYN')} dropped"
    if q.cookies:
        title += f"; {plural(q.cookies, 'SYN cookie')} sent"
    if q.syncookies is not None:
        title += f"; syncookies {'off' if q.syncookies == 0 else 'on'}"
    fixes = _syn_fixes(ctx, q.netns)
    if lst.send_q < BIG_BACKLOG:
        fixes.append(code_fix(f"listen() with a larger backlog (now {lst.send_q}; Python's "
                              "socketserver uses 5, many frameworks 100-128): the SYN queue "
                              "holds min(backlog, net.core.somaxconn) half-open handshakes"))
    return Finding(
        id="syn-flood", severity=severity, cause="SYN flood", title=title,
        subject=subject(q.netns, pid, comm, port, addr=lst.local_addr, direction=INBOUND,
                        syncookies=q.syncookies),
        evidence=evidence, fixes=fixes, why=WHY_SYN)


def _syn_fixes(ctx: Context, netns: str) -> list:
    fixes = []
    tun = ctx.tunables(netns) if _has_rates(ctx) else None
    if tun is None or tun.tcp_syncookies == 0:
        fixes.append(sysctl_fix("net.ipv4.tcp_syncookies", 1, netns,
                                "answer with SYN cookies when the SYN queue is full "
                                "instead of dropping"))
    if tun is None or (tun.tcp_synack_retries or 5) > 2:
        fixes.append(sysctl_fix("net.ipv4.tcp_synack_retries", 2, netns,
                                "hold half-open requests ~7 s instead of ~63 s"))
    fixes.append(config_fix("/etc/nftables.conf",
                            "tcp flags syn / fin,syn,rst,ack limit rate over 200/second burst "
                            "500 packets drop   # or SYNPROXY, or upstream DDoS protection",
                            "rate-limit SYNs upstream of the listener"))
    return fixes
