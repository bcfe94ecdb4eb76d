"""timeout-mismatch: keepalive and idle timeouts against what sits on the path.

Checks, per namespace with TCP sysctls:
  1. conntrack (loaded): nf_conntrack_tcp_timeout_established must be longer
     than the first keepalive probe (tcp_keepalive_time), or idle flows lose
     their entry before keepalive refreshes it. warning.
  Declared middleboxes apply to every namespace being checked: the host by
  default, NAME with --netns NAME, all of them with --all-netns (the user
  declares the middlebox on the path of the sockets asked about).
  2. each declared *flow* middlebox (--middlebox aws-nlb, azure-lb, SECONDS):
     keepalive (the host's tcp_keepalive_time/intvl/probes) must send its first
     probe and reset a dead peer strictly inside its idle timeout
     (diagnose.keepalive_target);
     nginx, when it runs, must close idle client connections before it too
     (keepalive_timeout), or set so_keepalive below it. warning.
  With `doctor --trace`: an address that reset MIN_IDLE_RESETS or more ESTABLISHED
  connections, each idle IDLE_RESET_S (or --min-age) or more before its reset, is a
  middlebox forgetting idle flows and answering with RST (diagnose.traced): named
  with the idle times, as evidence on the declared flow middleboxes' findings, or a
  finding of its own (warning) with the keepalive that beats its shortest idle time.
  3. each declared *proxy* middlebox (aws-alb, gcp-lb): the backend must keep
     idle connections *longer* than the proxy's idle timeout, or the proxy reuses
     a connection the backend is closing (HTTP 502). Whichever server's
     configuration was read in the namespace is checked (nginx keepalive_timeout,
     haproxy's frontend idle timeout, redis timeout, Apache KeepAliveTimeout:
     model.servers); without one an info finding says what to check. warning.
"""

from __future__ import annotations

from ..model.finding import Evidence, Finding, Fix
from ..model.socket import TIMER_OFF, Socket
from . import keepalive_target, traced
from .common import code_fix, config_fix, ev, plural, seconds, subject, sysctl_fix
from .context import Context, Options, Unavailable
from .middlebox import FLOW, PROXY
from .tally import ESTABLISHED

PROXY_MARGIN_S = 5  # backend idle timeout at least this much above the proxy's
IDLE_RESET_S = 60  # a reset after this much idle time is a flow forgotten, not an abort

CAUSE = "middlebox timing out"

WHY_FLOW = (
    "A NAT, firewall or L4 load balancer keeps per-flow state and forgets a flow that "
    "is idle longer than its idle timeout - silently, with no packet to either end. "
    "Both sockets stay ESTABLISHED; the next packet is dropped (or answered with RST), "
    "so the connection hangs until a timeout in the application or the kernel's "
    "retransmission limit (~15 minutes). TCP keepalive refreshes the flow only if the "
    "first probe comes before the middlebox forgets it: tcp_keepalive_time (default "
    "7200 s) is far longer than typical idle timeouts (350 s for an AWS NLB, 4 minutes "
    "for an Azure load balancer). Keepalive applies only to sockets with SO_KEEPALIVE; "
    "the sysctl is the default for TCP_KEEPIDLE."
)

WHY_PROXY = (
    "An L7 load balancer keeps a pool of idle connections to its backends and closes "
    "each after its own idle timeout. If the backend closes an idle connection first, "
    "the load balancer can send the next request on it at the moment the backend's FIN "
    "or RST is in flight, and the client gets HTTP 502. The load balancer must be the "
    "side that closes: the backend's idle (keep-alive) timeout must be longer than the "
    "load balancer's."
)

WHY_CT = (
    "conntrack forgets an ESTABLISHED flow nf_conntrack_tcp_timeout_established seconds "
    "after its last packet (default 432000 s, 5 days). If that is shorter than the time "
    "before the first keepalive probe, an idle connection loses its entry first; with "
    "NAT or a ruleset that drops INVALID packets, its next packet is dropped and the "
    "connection is half-open."
)



class FlowIdleState:
    """What timeout-mismatch keeps of the dump: per namespace, the ESTABLISHED sockets
    with no timer idle (data both ways) past each declared flow middlebox's timeout."""

    states = (ESTABLISHED,)

    def __init__(self, idle_timeouts_s: tuple[float, ...]) -> None:
        self.timeouts_s = idle_timeouts_s
        self._marks_ms = tuple(t * 1000 for t in idle_timeouts_s)
        self.idle: dict[str, list[int]] = {}  # netns -> sockets past each timeout

    def add(self, s: Socket) -> None:
        ti = s.tcp_info
        if s.timer != TIMER_OFF or ti is None:
            return
        idle = min(ti.last_data_recv, ti.last_data_sent)
        counts = self.idle.get(s.netns)
        if counts is None:
            counts = self.idle[s.netns] = [0] * len(self._marks_ms)
        for i, mark in enumerate(self._marks_ms):
            if idle >= mark:
                counts[i] += 1

    def past(self, netns: str, idle_timeout_s: float) -> int:
        counts = self.idle.get(netns)
        return counts[self.timeouts_s.index(idle_timeout_s)] if counts else 0

    def notes(self) -> list[str]:
        return []


def flow_idle_state(options: Options) -> FlowIdleState | None:
    """The state to keep when a flow middlebox is declared (--middlebox), else None."""
    timeouts = tuple(dict.fromkeys(mb.idle_timeout_s for mb in options.middleboxes
                                   if mb.kind == FLOW))
    return FlowIdleState(timeouts) if timeouts else None

def _namespace_probing(ctx: Context, space, host: keepalive_target.Probing
                       ) -> keepalive_target.SocketsProbing | None:
    """What the namespace's connections read (collect.keepalive_sample) do; None unread."""
    if space is None:
        return None
    procs = ctx.snapshot.processes
    seen = [k for pid in sorted(space.pids.members) if pid in procs for k in procs[pid].keepalive]
    return keepalive_target.summarize(seen, host)


def _all_own_inside(seen: keepalive_target.SocketsProbing | None, limit_s: float) -> bool:
    """Every connection read probes with values of its own, fast enough: the sysctls
    the finding is about apply to none of them."""
    return seen is not None and seen.default == 0 and seen.off == 0 \
        and seen.slowest is not None and seen.slowest.detect_s < limit_s


def _probing_fixes(have: keepalive_target.Probing, want: keepalive_target.Probing | None,
                   netns: str, name: str, limit_s: float) -> list[Fix]:
    """The sysctls that make the host's default keepalive beat `name`'s idle timeout."""
    if want is None:
        if keepalive_target.within(limit_s) is not None:
            return []  # the host already probes fast enough
        return [code_fix(f"no TCP keepalive can beat a {seconds(limit_s)} idle timeout "
                         "(TCP_KEEPIDLE and TCP_KEEPINTVL are whole seconds): send an "
                         f"application heartbeat more often than every {seconds(limit_s)}, "
                         "or raise the idle timeout")]
    why = (f"probing {want.text()}: the first probe and a dead peer's reset "
           f"({seconds(want.detect_s)}) inside {name}'s {seconds(limit_s)} "
           "(for sockets with SO_KEEPALIVE)")
    return [sysctl_fix(key, getattr(want, field), netns, why)
            for field, key in keepalive_target.PROBING_SYSCTLS if getattr(want, field) != getattr(have, field)]


def check_timeouts(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    checked_any = False
    nginx_ns = _nginx_namespaces(ctx)
    for ns in ctx.facts.namespaces.values():
        t = ns.tunables
        if t is None or t.tcp_keepalive_time is None:
            continue
        checked_any = True
        have = keepalive_target.host_default(t)  # its idle is tcp_keepalive_time
        findings += _conntrack(ns.netns, ns.conntrack, have)
        # Declared middleboxes sit on the path of the sockets asked about: they apply to
        # every namespace being checked (the host by default, --netns NAME, --all-netns).
        # nginx is checked in the namespace(s) where it owns sockets.
        nginx = ctx.nginx if ns.netns in nginx_ns else None
        for mb in ctx.options.middleboxes:
            if mb.kind == FLOW:
                findings += _flow(ctx, ns.netns, have, mb, nginx)
            elif mb.kind == PROXY:
                findings += _proxy(ctx, ns.netns, mb, _middlebox_ev(mb), nginx)
    if not checked_any:
        raise Unavailable(ctx.unavailable("tunables", "host") or "TCP keepalive sysctls not read")
    trace = ctx.traced()
    if trace is not None:
        findings += _idle_resets(ctx, trace, findings)
    return findings


def _keepalive_time_ev(have: keepalive_target.Probing) -> Evidence:
    return ev("tcp_keepalive_time", have.idle, "/proc/sys/net/ipv4/tcp_keepalive_time",
              "default TCP_KEEPIDLE for sockets with SO_KEEPALIVE")


def _middlebox_ev(mb) -> Evidence:
    return ev("middlebox_idle_timeout_s", mb.idle_timeout_s, mb.source or "--middlebox",
              f"{mb.name} ({mb.kind})")


def _conntrack(netns: str, ct, have: keepalive_target.Probing) -> list[Finding]:
    """conntrack (loaded) must remember an idle flow until the first keepalive probe."""
    est = ct.tcp_timeouts.get("established") if ct is not None and ct.loaded else None
    if est is None or est > have.idle:
        return []
    return [Finding(
        id="timeout-mismatch", severity="warning", cause=CAUSE,
        title=f"netns {netns}: conntrack forgets idle flows after {seconds(est)}, "
              f"before the first keepalive probe at {seconds(have.idle)}",
        subject=subject(netns, middlebox="conntrack"),
        evidence=[_keepalive_time_ev(have),
                  ev("conntrack_tcp_timeout_established", est,
                     "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established")],
        fixes=[sysctl_fix("net.netfilter.nf_conntrack_tcp_timeout_established",
                          max(432000, have.idle * 2), netns),
               *_probing_fixes(have, keepalive_target.wanted(est, have), netns, "conntrack", est)],
        why=WHY_CT)]


def _flow(ctx: Context, netns: str, have: keepalive_target.Probing, mb, nginx) -> list[Finding]:
    """A flow middlebox must see keepalive before it forgets an idle flow; nginx, where it
    runs, must close its idle clients (or probe them) before that too."""
    found = []
    want = keepalive_target.wanted(mb.idle_timeout_s, have)
    if want is not None or keepalive_target.within(mb.idle_timeout_s) is None:
        found.append(_flow_keepalive(ctx, netns, have, want, mb))
    if nginx is not None:
        kt = nginx.max_keepalive_timeout_s
        no_ka = [x for x in nginx.listens if not x.so_keepalive or x.so_keepalive == "off"]
        if kt >= mb.idle_timeout_s and no_ka:
            found.append(_nginx_flow(netns, mb, kt, no_ka, nginx))
    return found


def _flow_keepalive(ctx: Context, netns: str, have: keepalive_target.Probing,
                    want: keepalive_target.Probing | None, mb) -> Finding:
    """The namespace's default keepalive against a flow middlebox: a first probe after
    the flow is gone is a warning (unless every connection read probes in time on its
    own); before it, the flow is kept and only a dead peer is found late: info."""
    limit_s = mb.idle_timeout_s
    late = have.idle >= limit_s  # the first probe comes after the flow is gone
    seen = _namespace_probing(ctx, ctx.table.spaces.get(netns), have)
    title = (f"{mb.name} forgets idle flows after {seconds(limit_s)}; "
             + (f"keepalive probes start after {seconds(have.idle)}" if late else
                f"keepalive finds a dead peer only after {seconds(have.detect_s)}"))
    if seen is not None:
        title += f" for sockets that set nothing; {seen.text(have)}"
    return Finding(
        id="timeout-mismatch", cause=CAUSE,
        severity="warning" if late and not _all_own_inside(seen, limit_s) else "info",
        title=title, subject=subject(netns, middlebox=mb.name),
        evidence=_flow_evidence(ctx, netns, have, mb, seen),
        fixes=_probing_fixes(have, want, netns, mb.name, limit_s),
        why=WHY_FLOW)


def _flow_evidence(ctx: Context, netns: str, have: keepalive_target.Probing, mb,
                   seen: keepalive_target.SocketsProbing | None) -> list[Evidence]:
    """The host's keepalive and the middlebox's timeout; the sockets idle past it
    (ESTABLISHED, no timer, no data either way: FlowIdleState); what the namespace's
    connections probe with, when read."""
    flows: FlowIdleState = ctx.table.rule("timeout-mismatch")
    lost = flows.past(netns, mb.idle_timeout_s)
    evidence = [_keepalive_time_ev(have), _middlebox_ev(mb)]
    if lost:
        evidence.append(ev("idle_without_keepalive_past_timeout", lost, "tcp_info",
                           "ESTABLISHED, no keepalive timer, idle longer than the "
                           "middlebox remembers"))
    if seen is not None:
        evidence.append(ev("keepalive_read", seen.text(have), "getsockopt (pidfd_getfd)",
                           "TCP_KEEPIDLE/INTVL/CNT of the namespace's connections: "
                           "the sysctls apply only to those that set nothing"))
    evidence.append(ev("keepalive_detects_dead_peer_s", have.detect_s,
                       "/proc/sys/net/ipv4/tcp_keepalive_*", "tcp_keepalive_time + intvl x probes"))
    return evidence


WHY_IDLE_RESET = (
    "Connections that sat idle were reset as soon as they sent again, by the address of "
    "their peer, after similar idle times: a NAT, firewall or load balancer on the path "
    "forgot the idle flows and answers the next packet with RST in the peer's name (an "
    "nftables/iptables `reject with tcp reset` for packets of no known flow, an AWS NLB "
    "after 350 s, a home router's NAT). The application sees ECONNRESET on a connection "
    "it believed open. Keepalive probes sent before the middlebox's idle timeout keep the "
    "flow known to it; they apply only to sockets with SO_KEEPALIVE (TCP_KEEPIDLE, or the "
    "host's tcp_keepalive_time).")


def _idle_resets(ctx: Context, trace, findings: list[Finding]) -> list[Finding]:
    """The middleboxes the trace's resets name: evidence on a declared flow middlebox's
    findings (in the host namespace), else one finding each."""
    groups = traced.idle_resetters(trace, ctx.options.age(IDLE_RESET_S))
    if not groups:
        return []
    declared = [f for f in findings if f.subject.middlebox not in (None, "conntrack")]
    if declared:
        for f in declared:
            for g in groups:
                f.evidence += traced.resetter_evidence(g, trace.window_s)
        return []
    out = []
    ns = ctx.facts.namespaces.get("host") or next(iter(ctx.facts.namespaces.values()), None)
    t = ns.tunables if ns is not None else None
    for g in groups:
        fixes: list[Fix] = []
        if ns is not None and t is not None and t.tcp_keepalive_time is not None:
            have = keepalive_target.host_default(t)
            fixes = _probing_fixes(have, keepalive_target.wanted(g.idle_min_s, have),
                                   ns.netns, f"the middlebox at {g.peer}", g.idle_min_s)
        fixes.append(code_fix("set SO_KEEPALIVE on these connections (or send an application "
                              f"heartbeat) more often than every {seconds(g.idle_min_s)}, or "
                              "raise the middlebox's idle timeout"))
        out.append(Finding(
            id="timeout-mismatch", severity="warning", cause=CAUSE,
            title=f"{plural(g.resets, 'connection')} to {g.peer} reset after "
                  f"{seconds(g.idle_min_s)}-{seconds(g.idle_max_s)} idle: a middlebox on the "
                  "path forgets idle flows",
            subject=subject(ns.netns if ns is not None else "host", middlebox=f"resets from {g.peer}"),
            evidence=traced.resetter_evidence(g, trace.window_s), fixes=fixes,
            why=WHY_IDLE_RESET))
    return out


def _proxy(ctx: Context, netns: str, mb, mb_ev, nginx) -> list[Finding]:
    """The servers behind a proxy middlebox must keep idle connections longer than it:
    whichever server's configuration was read in this namespace (nginx, haproxy, redis,
    Apache httpd); without one, an info finding says what to check."""
    found = []
    behind = _servers_in(ctx, netns, nginx)
    for t in behind:
        kt = t.idle_timeout_s
        if kt is None or kt >= mb.idle_timeout_s + PROXY_MARGIN_S:
            continue
        keep = int(mb.idle_timeout_s + max(PROXY_MARGIN_S, 10))
        nginx_one = t.kind == "nginx" and nginx is not None
        name = t.kind if t.kind != "apache2" else "Apache"
        idle = t.idle.text() if t.idle is not None else ""
        found.append(Finding(
            id="timeout-mismatch", severity="warning", cause=CAUSE,
            title=f"{name} closes idle connections after {seconds(kt)}"
                  + ("" if nginx_one else f" (`{idle}`)")
                  + f", before {mb.name} does ({seconds(mb.idle_timeout_s)}): expect 502s",
            subject=subject(netns, t.pids[0] if t.pids else None, t.kind, middlebox=mb.name),
            evidence=[ev("nginx_keepalive_timeout_s", kt, nginx.source,
                         "the shortest keepalive_timeout (default 75 s)") if nginx_one else
                      ev(f"{t.kind}_idle_timeout_s", kt, t.idle.where if t.idle else t.config,
                         f"{idle}{' in ' + t.section if t.section else ''}; ports "
                         f"{', '.join(map(str, t.ports)) or 'all'}"),
                      mb_ev],
            fixes=[config_fix(nginx.fix_path if nginx_one else t.config, t.snippet(keep),
                              f"keep idle connections longer than {mb.name}")],
            why=WHY_PROXY))
    if not behind:
        evidence = [mb_ev]
        if ctx.nginx_note:
            evidence.append(ev("nginx", ctx.nginx_note, "nginx configuration"))
        if ctx.servers is not None and ctx.servers.notes:
            evidence.append(ev("servers", "; ".join(ctx.servers.notes), "server configuration"))
        found.append(Finding(
            id="timeout-mismatch", severity="info", cause=CAUSE,
            title=f"behind {mb.name}: check that the backend keeps idle "
                  f"connections longer than {seconds(mb.idle_timeout_s)}",
            subject=subject(netns, middlebox=mb.name), evidence=evidence,
            fixes=[], why=WHY_PROXY))
    return found


def _servers_in(ctx: Context, netns: str, nginx) -> list:
    """The servers whose configuration was read that run in `netns` (own a socket
    there); nginx where _nginx_namespaces puts it (`nginx` is None elsewhere)."""
    space = ctx.table.spaces.get(netns)
    out = []
    for t in ctx.server_timeouts():
        if t.kind == "nginx":
            if nginx is not None:
                out.append(t)
        elif space is not None and any(pid in space.pids for pid in t.pids):
            out.append(t)
    return out


def _nginx_namespaces(ctx: Context) -> set[str]:
    """Where nginx owns sockets; the host (or the one checked namespace) if unknown."""
    if ctx.nginx is None:
        return set()
    pids = set(ctx.nginx.pids)
    found = {netns for netns, space in ctx.table.spaces.items()
             if any(pid in space.pids for pid in pids)}
    if found:
        return found
    checked = ctx.checked_netns()
    return {"host"} if "host" in checked or len(checked) != 1 else checked


def _nginx_flow(netns, mb, kt, no_ka, nginx) -> Finding:
    ports = sorted({x.port for x in no_ka if x.port})
    probing = keepalive_target.within(mb.idle_timeout_s)
    close_by = max(1, keepalive_target.budget_s(mb.idle_timeout_s))
    listen = (f"\nlisten {ports[0] if ports else 80} so_keepalive={probing.idle}s:"
              f"{probing.interval}s:{probing.count};" if probing is not None else "")
    return Finding(
        id="timeout-mismatch", severity="warning", cause=CAUSE,
        title=f"nginx keeps idle connections {seconds(kt)}, longer than {mb.name} remembers "
              f"them ({seconds(mb.idle_timeout_s)}), without so_keepalive",
        subject=subject(netns, nginx.pids[0] if nginx.pids else None, "nginx",
                        ports[0] if len(ports) == 1 else None, middlebox=mb.name),
        evidence=[ev("nginx_keepalive_timeout_s", kt, nginx.source, "the longest keepalive_timeout"),
                  ev("listens_without_so_keepalive", [x.address for x in no_ka], nginx.source),
                  ev("middlebox_idle_timeout_s", mb.idle_timeout_s, mb.source, mb.name)],
        fixes=[config_fix(nginx.fix_path,
                          f"keepalive_timeout {min(int(kt), close_by)}s;{listen}",
                          f"close idle client connections, or probe them, before {mb.name} "
                          "forgets the flow")],
        why=WHY_FLOW)



