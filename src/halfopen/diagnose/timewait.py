"""time-wait-pressure: TIME_WAIT buckets and ephemeral ports per destination.

  TIME_WAIT vs tcp_max_tw_buckets (per namespace): warning >= TW_WARN,
  critical when TcpExt.TCPTimeWaitOverflow grew in the window (the kernel logs
  nothing for it on current kernels).
  Ephemeral ports: an outgoing connection is unique by (local addr, local port,
  peer addr, peer port), so the limit is ip_local_port_range per destination
  ip:port and local address. Sockets of every state (TIME_WAIT included) whose
  local port is in the range and is not a listening port count.
  warning >= PORTS_WARN of the range, critical >= PORTS_CRITICAL.
"""

from __future__ import annotations

from ..model.finding import Finding
from ..model.host import NamespaceHost, Tunables
from ..model.states import TcpState
from ..model.sysctls import DEFAULT_PORT_RANGE
from .common import SOCK_DIAG, code_fix, ev, subject, sysctl_fix, top, who
from .context import Context

TW_WARN = 0.8
PORTS_WARN = 0.5
PORTS_CRITICAL = 0.8

TIME_WAIT = int(TcpState.TIME_WAIT)
CAUSE = "after the fix: TIME_WAIT"

WHY_TW = (
    "The side that closes a TCP connection first keeps it in TIME_WAIT for 60 s (fixed in "
    "the kernel, TCP_TIMEWAIT_LEN; tcp_fin_timeout does not change it) so that late "
    "segments of the old connection cannot corrupt a new one with the same four-tuple. "
    "A client that opens and closes many short connections to one destination keeps one "
    "local port per connection busy for that minute; with the default "
    "ip_local_port_range (28,232 ports) that is ~470 new connections per second per "
    "destination before connect() fails with EADDRNOTAVAIL. Past tcp_max_tw_buckets the "
    "kernel destroys TIME_WAIT sockets early (TcpExt.TCPTimeWaitOverflow) and logs "
    "nothing. TIME_WAIT is not a leak and costs little memory; the fix is fewer new "
    "connections (pooling, HTTP keep-alive), a wider port range, or tcp_tw_reuse=1 for "
    "outgoing connections. tcp_tw_recycle no longer exists (removed in 4.12)."
)


def check_time_wait(ctx: Context) -> list[Finding]:
    findings = []
    hf = ctx.snapshot.host_facts
    namespaces = sorted(set(ctx.table.spaces) | (set(hf.namespaces) if hf else set()))
    for netns in namespaces:
        tun = ctx.tunables(netns) if hf is not None else None
        findings += _ephemeral_ports(ctx, netns, tun)
        if hf is None or tun is None or not tun.tcp_max_tw_buckets:
            continue
        findings += _tw_buckets(ctx, netns, tun.tcp_max_tw_buckets, hf.namespaces.get(netns))
    return findings


def _ephemeral_ports(ctx: Context, netns: str, tun: Tunables | None) -> list[Finding]:
    """The destinations whose sockets hold PORTS_WARN or more of the ephemeral port
    range (the default range when its sysctl was not read), busiest first."""
    lo, hi = (tun.ip_local_port_range if tun is not None and tun.ip_local_port_range
              else DEFAULT_PORT_RANGE)
    size = hi - lo + 1
    found = []
    groups = ctx.table.dest_groups(netns, lo, hi, PORTS_WARN * size)
    for group in sorted(groups, key=lambda g: -g[1]):
        if group[1] / size < PORTS_WARN:
            break
        found.append(_ports_to(netns, tun, (lo, hi), group))
    return found


def _ports_to(netns: str, tun: Tunables | None, port_range: tuple[int, int], group) -> Finding:
    """One destination's share of the ephemeral ports (a dest_groups row)."""
    (laddr, paddr, pport), count, states, owners = group
    lo, hi = port_range
    size = hi - lo + 1
    ratio = count / size
    pid, comm = owners.most_common(1)[0][0] if owners else (None, "")
    dest = f"{paddr}:{pport}" if ":" not in paddr else f"[{paddr}]:{pport}"
    fixes = [sysctl_fix("net.ipv4.ip_local_port_range", "1024 65535", netns,
                        "about 64,500 ports per destination; keep listening ports "
                        "out of it with net.ipv4.ip_local_reserved_ports")]
    if tun is None or tun.tcp_tw_reuse != 1:
        fixes.append(sysctl_fix("net.ipv4.tcp_tw_reuse", 1, netns,
                                "let outgoing connections reuse a TIME_WAIT port "
                                "(safe with TCP timestamps)"))
    fixes.append(code_fix(f"reuse connections to {dest} (a pool, HTTP keep-alive) "
                          "instead of one connection per request"))
    return Finding(
        id="time-wait-pressure",
        severity="critical" if ratio >= PORTS_CRITICAL else "warning", cause=CAUSE,
        title=f"{count:,} of {size:,} ephemeral ports to {dest} in use "
              f"({ratio * 100:.0f}%)" + (f", mostly {who(pid, comm)}" if pid else ""),
        subject=subject(netns, pid, comm, pport, peer=dest),
        evidence=[ev("ports_in_use", count, SOCK_DIAG, f"local {laddr}, every state"),
                  ev("ip_local_port_range", [lo, hi], "/proc/sys/net/ipv4/ip_local_port_range"),
                  ev("states", top(states), SOCK_DIAG)],
        fixes=fixes, why=WHY_TW)


def _tw_buckets(ctx: Context, netns: str, buckets: int, ns: NamespaceHost | None
                ) -> list[Finding]:
    """TIME_WAIT against the namespace's tcp_max_tw_buckets, or destroyed early."""
    space = ctx.table.spaces.get(netns)
    tw = space.states[TIME_WAIT] if space is not None else 0
    if ns is not None and ns.sockstat is not None:
        tw = max(tw, ns.sockstat.tcp_tw)
    overflow = ctx.delta(netns, "TcpExt.TCPTimeWaitOverflow") or 0
    ratio = tw / buckets
    if not overflow and ratio < TW_WARN:
        return []
    return [Finding(
        id="time-wait-pressure", severity="critical" if overflow else "warning",
        cause=CAUSE,
        title=f"netns {netns}: {tw:,} TIME_WAIT sockets, {ratio * 100:.0f}% of "
              f"tcp_max_tw_buckets" + (f"; {overflow} destroyed early" if overflow else ""),
        subject=subject(netns),
        evidence=[ev("time_wait", tw, "/proc/net/sockstat"),
                  ev("tcp_max_tw_buckets", buckets, "/proc/sys/net/ipv4/tcp_max_tw_buckets"),
                  ev("time_wait_overflow", overflow, "/proc/net/netstat",
                     "TcpExt.TCPTimeWaitOverflow over the window")],
        fixes=[sysctl_fix("net.ipv4.tcp_max_tw_buckets", buckets * 2, netns),
               code_fix("let the client close first, or reuse connections: the side "
                        "that closes first holds TIME_WAIT")],
        why=WHY_TW)]
