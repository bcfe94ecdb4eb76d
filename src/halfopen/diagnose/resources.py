"""Exhaustion of host resources: fds, conntrack, TCP memory, orphans, RAM.

fd-exhaustion, per process (fds / RLIMIT_NOFILE soft) and host (file-nr / file-max):
  warning >= FD_WARN, critical >= FD_CRITICAL, or (with history) the limit is
  projected within FD_ETA_S. netdata warns at 90 % host-wide only.
conntrack-exhaustion, per namespace: count/max warning >= CT_WARN,
  critical >= CT_CRITICAL, or drops/early_drop/insert_failed grew in the
  window, or "table full" in the kernel log in the last hour. (netdata: 90 %.)
tcp-memory-pressure: sockstat TCP mem (pages) vs tcp_mem: warning at the
  pressure threshold, critical at MEM_CRITICAL of max or TCPAbortOnMemory grew,
  or "out of memory -- consider tuning tcp_mem" in the last hour.
orphan-pressure: sockstat orphan vs tcp_max_orphans: warning >= ORPHAN_WARN,
  critical >= ORPHAN_CRITICAL or "too many orphaned sockets" in the last hour.
  FIN_WAIT2 pile-up, per namespace: unowned FIN_WAIT2 sockets >= FIN_WAIT2_SHARE
  of the limit that holds them (tcp_max_tw_buckets of the namespace when
  tcp_fin_timeout <= 60, else tcp_max_orphans), at least FIN_WAIT2_MIN: warning.
  (netdata: 25 %; ours adds the FIN_WAIT2 pile-up and the log line.)
memory-exhaustion: OOM kills in the last hour (warning; critical from 3), or
  MemAvailable below MEM_AVAIL_WARN / MEM_AVAIL_CRITICAL of MemTotal.
"""

from __future__ import annotations

from collections import Counter

from halfopen.records import record

from ..model.finding import Evidence, Finding, Fix
from ..model.history import slope_per_s
from ..model.host import UNLIMITED, FileLimits, HostFacts, ProcessLimits
from ..model.states import state_name
from .common import (
    SOCK_DIAG,
    code_fix,
    ev,
    plural,
    prlimit_fix,
    seconds,
    subject,
    sysctl_fix,
    systemd_limit_fix,
    top,
    who,
)
from .context import Context, Unavailable
from .tally import FIN_WAIT2, ORPHAN_STATES, NamespaceFigures

FD_WARN = 0.8
FD_CRITICAL = 0.95
FD_ETA_S = 3600
CT_WARN = 0.8
CT_CRITICAL = 0.95
MEM_CRITICAL = 0.9
ORPHAN_WARN = 0.5
ORPHAN_CRITICAL = 0.8
FIN_WAIT2_SHARE = 0.25  # of the limit that holds orphaned FIN_WAIT2 sockets
FIN_WAIT2_MIN = 16  # below this a pile-up is noise, whatever the limit
MEM_AVAIL_WARN = 0.10
MEM_AVAIL_CRITICAL = 0.05
OOM_CRITICAL_COUNT = 3
KLOG_RECENT_S = 3600

RESOURCE = "resource exhaustion"


def _recent(ctx: Context, kind: str) -> list:
    hf = ctx.facts
    return [line for line in hf.kernel_log
            if line.kind == kind and ctx.now - line.wall_time <= KLOG_RECENT_S]


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


# ---------------------------------------------------------------- fds

WHY_FD = (
    "Every socket, file and pipe a process holds is a file descriptor, and RLIMIT_NOFILE "
    "caps how many it may hold. At the limit, accept(), socket() and open() fail with "
    "EMFILE: a server stops taking connections while its listener still accepts "
    "handshakes into the queue. Host-wide, fs.file-max caps all of them (ENFILE). "
    "/proc/PID/limits is read-only: prlimit(2) raises a running process's limit (a hard "
    "limit only with CAP_SYS_RESOURCE), and the service manager's setting "
    "(LimitNOFILE=) makes it last. A higher limit buys time; if the count keeps "
    "growing, something leaks - look at close-wait-leak and fd-leak."
)


def check_fds(ctx: Context) -> list[Finding]:
    hf = ctx.facts
    reason = ctx.unavailable("limits")
    if reason and not hf.processes:
        raise Unavailable(f"/proc/PID/limits not read: {reason}")
    findings = []
    for p in sorted(hf.processes.values(), key=lambda p: -p.fd_count):
        if p.nofile_soft in (UNLIMITED, 0) or not ctx.in_scope(p.pid, p.netns):
            continue  # unlimited, or a process outside the namespaces being checked
        found = _process_fds(ctx, p)
        if found is not None:
            findings.append(found)
    files = hf.files
    if files is not None and files.file_max > 0:
        findings += _host_files(hf, files)
    elif files is None and not findings:
        reason = ctx.unavailable("files")
        if reason:
            raise Unavailable(f"fs.file-nr not read: {reason}")
    return findings


def _process_fds(ctx: Context, p: ProcessLimits) -> Finding | None:
    """A process at FD_WARN of its soft RLIMIT_NOFILE, or (with history) that reaches it
    within FD_ETA_S; None below."""
    ratio = p.fd_count / p.nofile_soft
    eta = _fd_eta(ctx, p)
    if ratio >= FD_CRITICAL or (eta is not None and eta < FD_ETA_S):
        severity = "critical"
    elif ratio >= FD_WARN:
        severity = "warning"
    else:
        return None
    evidence = [ev("fds_open", p.fd_count, "/proc/PID/fd"),
                ev("socket_fds", p.socket_fds, "/proc/PID/fd"),
                ev("rlimit_nofile_soft", p.nofile_soft, "/proc/PID/limits"),
                ev("rlimit_nofile_hard", p.nofile_hard, "/proc/PID/limits"),
                ev("used_ratio", round(ratio, 3), "computed")]
    if eta is not None:
        evidence.append(ev("seconds_to_limit", round(eta), "history"))
    return Finding(
        id="fd-exhaustion", severity=severity, cause=RESOURCE,
        title=f"{who(p.pid, p.comm)} uses {p.fd_count:,} of {p.nofile_soft:,} file "
              f"descriptors ({_pct(ratio)})" + (f"; limit in ~{seconds(eta)}" if eta else ""),
        subject=subject(p.netns, p.pid, p.comm),
        evidence=evidence, fixes=_nofile_fixes(p), why=WHY_FD)


def _fd_eta(ctx: Context, p: ProcessLimits) -> float | None:
    """Seconds until the fd count reaches the soft limit at its recorded rate; None
    without history or growth."""
    if ctx.history is None:
        return None
    rate = slope_per_s(ctx.history.points(p.pid, "fds") + [(ctx.now, p.fd_count)])
    return (p.nofile_soft - p.fd_count) / rate if rate and rate > 0 else None


def _nofile_fixes(p: ProcessLimits) -> list[Fix]:
    """A limit 4x the soft one (at least 65536), within the hard limit unless that is
    lower than the soft one: now (prlimit), for good (the unit), and the leak check."""
    hard = p.nofile_hard
    target = max(p.nofile_soft * 4, 65536)
    if hard != UNLIMITED:
        target = min(target, hard) if hard > p.nofile_soft else target
    if hard == UNLIMITED or target <= hard:
        now = prlimit_fix(p.pid, target)
    else:
        now = prlimit_fix(p.pid, target, target,
                          "soft and hard above the current hard limit: needs CAP_SYS_RESOURCE")
    return [now, systemd_limit_fix(p.pid, p.unit, target),
            code_fix("if the count grows steadily, find what is not closed "
                     "(ls -l /proc/PID/fd | sort | uniq -c) before raising limits")]


def _host_files(hf: HostFacts, files: FileLimits) -> list[Finding]:
    """fs.file-nr against fs.file-max: one host-wide limit, every namespace's files."""
    ratio = files.allocated / files.file_max
    if ratio < FD_WARN:
        return []
    top_users = [[f"{hf.processes[x].comm} ({x})", hf.processes[x].fd_count]
                 for x in hf.top_fd_pids[:5] if x in hf.processes]
    return [Finding(
        id="fd-exhaustion", severity="critical" if ratio >= FD_CRITICAL else "warning",
        cause=RESOURCE,
        title=f"host-wide: {files.allocated:,} of {files.file_max:,} file handles in "
              f"use ({_pct(ratio)}), all namespaces",
        subject=subject("host", scope="host-wide"),
        evidence=[ev("file_nr", files.allocated, "/proc/sys/fs/file-nr",
                     "host-wide: every namespace's files"),
                  ev("file_max", files.file_max, "/proc/sys/fs/file-max"),
                  ev("top_fd_users", top_users, "/proc/PID/fd", "host-wide, any namespace")],
        fixes=[sysctl_fix("fs.file-max", files.file_max * 2, "host",
                          "fs.file-max is one host-wide limit (not per namespace): "
                          "set it on the host")],
        why=WHY_FD)]


# ---------------------------------------------------------------- conntrack

WHY_CT = (
    "With nf_conntrack loaded, every flow through or to this host takes an entry, and "
    "nf_conntrack_max caps them. When the table is full the kernel drops the first "
    "packet of every new flow (\"nf_conntrack: table full, dropping packet\"): new "
    "connections time out while tracked ones keep working, which looks like a random "
    "network fault. Entries of ESTABLISHED flows live nf_conntrack_tcp_timeout_established "
    "(default 432000 s, 5 days) after the last packet, so half-open connections whose "
    "peer vanished keep their entries for days. nf_conntrack_max is one global value "
    "that each namespace's table is held to; the kernel makes it read-only inside a "
    "network namespace, so it is raised on the host. The TCP timeouts are per namespace."
)


# net/netfilter/nf_conntrack_standalone.c, nf_conntrack_standalone_init_sysctl():
# "Don't allow non-init_net ns to alter global sysctls" - nf_conntrack_max (and
# nf_conntrack_buckets, nf_conntrack_expect_max) are mode 0444 outside the initial
# namespace: `ip netns exec NS sysctl -w net.netfilter.nf_conntrack_max=...` fails.
# The one global value caps the table of every namespace. The TCP timeouts are per
# namespace and writable there.
CT_MAX_HOST_ONLY = (
    "nf_conntrack_max is one global limit, read-only inside a network namespace "
    "(nf_conntrack_standalone.c makes it 0444 outside the initial one): set it on the "
    "host; it caps each namespace's table, this one's included")


def check_conntrack(ctx: Context) -> list[Finding]:
    findings = []
    unknown = []
    full_lines = _recent(ctx, "conntrack-full")
    for ns in ctx.namespaces():
        ct = ns.conntrack
        if ct is None:
            reason = ctx.unavailable("conntrack", ns.netns)
            if reason:
                unknown.append(f"{ns.netns}: {reason}")
            continue
        if not ct.loaded:
            continue  # no conntrack, nothing to exhaust
        if ct.count is None or not ct.max:
            unknown.append(f"{ns.netns}: {ct.reason or 'count or max not readable'}")
            continue
        ratio = ct.count / ct.max
        grew = {}
        for key in ("drop", "early_drop", "insert_failed"):
            # stats are cumulative; the collector keeps no second sample of them, so
            # any non-zero value is history since boot: evidence, not a trigger.
            if ct.stats.get(key):
                grew[key] = ct.stats[key]
        if ratio >= CT_CRITICAL or (full_lines and ratio >= CT_WARN):
            severity = "critical"
        elif ratio >= CT_WARN or full_lines:
            severity = "warning"
        else:
            continue
        est = ct.tcp_timeouts.get("established")
        evidence = [ev("conntrack_count", ct.count, "/proc/sys/net/netfilter/nf_conntrack_count"),
                    ev("conntrack_max", ct.max, "/proc/sys/net/netfilter/nf_conntrack_max"),
                    ev("used_ratio", round(ratio, 3), "computed")]
        evidence += [ev(k, v, "/proc/net/stat/nf_conntrack", "since boot, all CPUs")
                     for k, v in grew.items()]
        if est is not None:
            evidence.append(ev("tcp_timeout_established", est,
                               "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"))
        if full_lines:
            evidence.append(ev("kernel_log", full_lines[-1].text, "kernel log",
                               f"{len(full_lines)} in the last hour"))
        fixes = [sysctl_fix("net.netfilter.nf_conntrack_max", max(ct.max * 2, 262144), "host",
                            CT_MAX_HOST_ONLY if ns.netns != "host" else "")]
        if est is not None and est > 86400:
            fixes.append(sysctl_fix("net.netfilter.nf_conntrack_tcp_timeout_established", 86400,
                                    ns.netns, "forget idle established flows after 1 day "
                                    "instead of 5 (keep it above every keepalive time)"))
        fixes.append(config_note())
        findings.append(Finding(
            id="conntrack-exhaustion", severity=severity, cause=RESOURCE,
            title=f"netns {ns.netns}: conntrack table {_pct(ratio)} full "
                  f"({ct.count:,}/{ct.max:,})",
            subject=subject(ns.netns), evidence=evidence, fixes=fixes, why=WHY_CT))
    if unknown and not findings and not any(
            ns.conntrack is not None and ns.conntrack.loaded for ns in ctx.namespaces()):
        raise Unavailable("; ".join(unknown))
    return findings


def config_note():
    return Fix("config", "echo 'options nf_conntrack hashsize=65536' > "
               "/etc/modprobe.d/nf_conntrack.conf", False,
               {"file": "/etc/modprobe.d/nf_conntrack.conf",
                "snippet": "options nf_conntrack hashsize=65536"},
               "grow the hash table with the table (or `notrack` flows that need no state)")


# ---------------------------------------------------------------- tcp memory

WHY_MEM = (
    "TCP buffers of all sockets share one budget, net.ipv4.tcp_mem (pages: min, pressure, "
    "max). Above pressure the kernel shrinks buffers; at max it refuses memory: "
    "retransmit queues are pruned, new data is dropped, orphaned sockets are reset "
    "(TcpExt.TCPAbortOnMemory) and the kernel prints \"TCP: out of memory -- consider "
    "tuning tcp_mem\". Sockets whose peer stopped reading or vanished with data queued "
    "(large Send-Q) are a common cause; so are leaked sockets with unread data."
)


def check_tcp_memory(ctx: Context) -> list[Finding]:
    hf = ctx.facts
    tun = ctx.global_tunables()
    ns_host = hf.namespaces.get("host") or next(iter(hf.namespaces.values()), None)
    st = ns_host.sockstat if ns_host is not None else None
    if ns_host is None or st is None or tun is None or tun.tcp_mem is None:
        raise Unavailable(ctx.unavailable("sockstat", "host") or ctx.unavailable("global-tunables")
                          or "sockstat or tcp_mem not read")
    lo, pressure, hi = tun.tcp_mem
    aborts = ctx.delta(ns_host.netns, "TcpExt.TCPAbortOnMemory") or 0
    pressures = ctx.delta(ns_host.netns, "TcpExt.TCPMemoryPressures") or 0
    lines = _recent(ctx, "tcp-memory") + _recent(ctx, "socket-memory")
    if st.tcp_mem >= MEM_CRITICAL * hi or aborts or lines:
        severity = "critical"
    elif st.tcp_mem >= pressure or pressures:
        severity = "warning"
    else:
        return []
    evidence = [ev("tcp_mem_pages", st.tcp_mem, "/proc/net/sockstat"),
                ev("tcp_mem_sysctl", list(tun.tcp_mem), "/proc/sys/net/ipv4/tcp_mem",
                   "min, pressure, max (pages)"),
                ev("abort_on_memory", aborts, "/proc/net/netstat", "over the window"),
                ev("memory_pressures", pressures, "/proc/net/netstat", "over the window"),
                ev("largest_send_q", ctx.table.largest_send_q(), SOCK_DIAG)]
    if lines:
        evidence.append(ev("kernel_log", lines[-1].text, "kernel log"))
    return [Finding(
        id="tcp-memory-pressure", severity=severity, cause=RESOURCE,
        title=f"TCP buffers use {st.tcp_mem:,} pages: {_pct(st.tcp_mem / hi)} of tcp_mem max",
        subject=subject("host", scope="host-wide"), evidence=evidence,
        fixes=[sysctl_fix("net.ipv4.tcp_mem", f"{lo * 2} {pressure * 2} {hi * 2}", "host",
                          "double the TCP memory budget (pages; one host-wide budget, set "
                          "in the initial namespace only); check RAM first"),
               code_fix("find sockets with large Send-Q/Recv-Q: peers that stopped reading, "
                        "or leaked sockets holding unread data")],
        why=WHY_MEM)]


# ---------------------------------------------------------------- orphans

WHY_ORPHAN = (
    "An orphan is a TCP socket no process holds any more: the application closed it and "
    "the kernel still finishes the connection (FIN_WAIT1 sending queued data and FIN, "
    "FIN_WAIT2 waiting for the peer's FIN up to tcp_fin_timeout, LAST_ACK, CLOSING). "
    "Above net.ipv4.tcp_max_orphans the kernel resets new orphans at once and prints "
    "\"TCP: too many orphaned sockets\"; each orphan can also pin buffer memory. Many "
    "orphans mean peers that do not finish closing (vanished, or not reading so our "
    "queued data cannot drain). TIME_WAIT sockets are not orphans in this count."
)


def _fin_wait2_limit(ctx: Context, netns: str, max_orphans: int) -> tuple[str, int]:
    """The limit that holds this namespace's orphaned FIN_WAIT2 sockets.

    tcp_close() of a socket in FIN_WAIT2 keeps a full orphan socket only while
    tcp_fin_timeout exceeds TCP_TIMEWAIT_LEN (60 s); otherwise (the default, 60) it
    becomes a timewait mini socket in substate FIN_WAIT2 (tcp_time_wait()), counted
    against the namespace's tcp_max_tw_buckets, and dropped when that is full.
    """
    t = ctx.tunables(netns)
    fin = t.tcp_fin_timeout if t is not None else None
    if fin is not None and fin <= 60 and t is not None and t.tcp_max_tw_buckets:
        return "tcp_max_tw_buckets", t.tcp_max_tw_buckets
    return "tcp_max_orphans", max_orphans


@record(frozen=True)
class _Pile:
    """A namespace's unowned FIN_WAIT2 sockets, past their share of the limit that holds them."""

    count: int
    limit_name: str  # _fin_wait2_limit
    limit: int
    threshold: int  # FIN_WAIT2_SHARE of the limit, at least FIN_WAIT2_MIN


def _fin_wait2_piles(ctx: Context, max_orphans: int) -> dict[str, _Pile]:
    """The namespaces whose unowned FIN_WAIT2 sockets reach their threshold."""
    piles = {}
    for netns, sp in ctx.table.spaces.items():
        count = sp.orphans[FIN_WAIT2]
        if not count:
            continue
        name, limit = _fin_wait2_limit(ctx, netns, max_orphans)
        threshold = max(FIN_WAIT2_MIN, int(limit * FIN_WAIT2_SHARE))
        if count >= threshold:
            piles[netns] = _Pile(count, name, limit, threshold)
    return piles


def check_orphans(ctx: Context) -> list[Finding]:
    hf = ctx.facts
    tun = ctx.global_tunables()
    ns_host = hf.namespaces.get("host") or next(iter(hf.namespaces.values()), None)
    st = ns_host.sockstat if ns_host is not None else None
    if ns_host is None or st is None or tun is None or not tun.tcp_max_orphans:
        raise Unavailable(ctx.unavailable("sockstat", "host") or ctx.unavailable("global-tunables")
                          or "sockstat or tcp_max_orphans not read")
    max_orphans = tun.tcp_max_orphans
    ratio = st.tcp_orphan / max_orphans
    piles = _fin_wait2_piles(ctx, max_orphans)
    lines = _recent(ctx, "orphans")
    host_label = ns_host.netns
    findings = []
    if ratio >= ORPHAN_CRITICAL or lines or ratio >= ORPHAN_WARN or host_label in piles:
        host_space = ctx.table.spaces.get(host_label)
        fw2 = host_space.orphans[FIN_WAIT2] if host_space is not None else 0
        pile = piles.get(host_label)
        evidence = _orphan_evidence(st.tcp_orphan, max_orphans, host_space)
        if lines:
            evidence.append(ev("kernel_log", lines[-1].text, "kernel log"))
        if pile is not None:
            evidence.append(_pile_evidence(pile))
        findings.append(Finding(
            id="orphan-pressure", cause=RESOURCE,
            severity="critical" if ratio >= ORPHAN_CRITICAL or lines else "warning",
            title=f"{st.tcp_orphan:,} orphaned TCP sockets ({_pct(ratio)} of tcp_max_orphans)"
                  + (f", {plural(fw2, 'in FIN_WAIT2', 'in FIN_WAIT2')}" if fw2 else ""),
            subject=subject(host_label), evidence=evidence,
            fixes=_orphan_fixes(ctx, host_label, max_orphans,
                                ratio >= ORPHAN_WARN or bool(lines), pile),
            why=WHY_ORPHAN))
    for netns, pile in sorted(piles.items()):
        if netns == host_label and findings:
            continue
        findings.append(_pile_finding(ctx, netns, pile))
    return findings


def _orphan_evidence(orphans: int, max_orphans: int, host_space: NamespaceFigures | None) -> list[Evidence]:
    states = Counter({state_name(st): host_space.orphans[st] for st in ORPHAN_STATES
                      if host_space is not None and host_space.orphans[st]})
    return [ev("orphans", orphans, "/proc/net/sockstat"),
            ev("tcp_max_orphans", max_orphans, "/proc/sys/net/ipv4/tcp_max_orphans", "host-wide"),
            ev("used_ratio", round(orphans / max_orphans, 3), "computed"),
            ev("orphan_states", top(states), SOCK_DIAG),
            ev("fin_wait2_peers", top(host_space.fw2_peers) if host_space else [], SOCK_DIAG)]


def _orphan_fixes(ctx: Context, netns: str, max_orphans: int, over: bool,
                  pile: _Pile | None) -> list[Fix]:
    """`over`: the orphans (or the kernel log) press on tcp_max_orphans itself."""
    fixes = _fin_timeout_fix(ctx, netns) if pile is not None else []
    # raising tcp_max_orphans helps only when orphans count against it: not for a
    # FIN_WAIT2 pile held by the namespace's tcp_max_tw_buckets
    if over or (pile is not None and pile.limit_name == "tcp_max_orphans"):
        fixes.append(sysctl_fix("net.ipv4.tcp_max_orphans", max_orphans * 2, "host",
                                "one host-wide limit (set in the initial namespace only); "
                                "each orphan may use up to ~64 KB of unswappable memory"))
    if pile is not None:
        fixes.append(_peers_fix())
    return fixes


def _pile_finding(ctx: Context, netns: str, pile: _Pile) -> Finding:
    return Finding(
        id="orphan-pressure", severity="warning", cause=RESOURCE,
        title=f"netns {netns}: {plural(pile.count, 'orphaned socket')} in FIN_WAIT2 "
              f"({_pct(pile.count / pile.limit)} of {pile.limit_name}): peers do not finish "
              "closing",
        subject=subject(netns),
        evidence=[_pile_evidence(pile),
                  ev("fin_wait2_peers", top(ctx.table.spaces[netns].fw2_peers), SOCK_DIAG)],
        fixes=_fin_timeout_fix(ctx, netns) + [_peers_fix()],
        why=WHY_ORPHAN)


def _peers_fix() -> object:
    return code_fix("find why the peers named above never send their FIN (vanished clients, "
                    "half-closed proxies)")


def _pile_evidence(pile: _Pile) -> Evidence:
    return ev("fin_wait2_orphans", pile.count, SOCK_DIAG,
              f"threshold {pile.threshold:,} = {_pct(FIN_WAIT2_SHARE)} of {pile.limit_name} "
              f"({pile.limit:,}), the limit that holds them")


def _fin_timeout_fix(ctx: Context, netns: str) -> list:
    t = ctx.tunables(netns)
    if t is None or t.tcp_fin_timeout is None or t.tcp_fin_timeout <= 30:
        return []
    return [sysctl_fix("net.ipv4.tcp_fin_timeout", 30, netns,
                       f"orphans leave FIN_WAIT2 after 30 s instead of {t.tcp_fin_timeout} s "
                       "(per namespace)")]


# ---------------------------------------------------------------- memory

WHY_OOM = (
    "The kernel's OOM killer ended processes because memory ran out. A killed server "
    "drops all its connections at once (its sockets are closed, peers get RST or FIN), "
    "and a half-dead one under memory pressure stops reading and accepting: sockets "
    "pile up in its accept and receive queues. Leaked connections (CLOSE_WAIT, dead "
    "peers with queued data) hold memory too."
)


def check_memory(ctx: Context) -> list[Finding]:
    hf = ctx.facts
    ooms = _recent(ctx, "oom-kill")
    mem = hf.memory
    if mem is None and not hf.kernel_log_source:
        raise Unavailable(ctx.unavailable("memory") or "/proc/meminfo and kernel log not read")
    findings = []
    if ooms:
        killed = Counter(f"{line.comm} ({line.pid})" for line in ooms if line.pid)
        findings.append(Finding(
            id="memory-exhaustion",
            severity="critical" if len(ooms) >= OOM_CRITICAL_COUNT else "warning",
            cause=RESOURCE,
            title=f"the OOM killer ran {plural(len(ooms), 'time')} in the last hour",
            subject=subject("host"),
            evidence=[ev("oom_kills", len(ooms), hf.kernel_log_source or "kernel log"),
                      ev("killed", top(killed), "kernel log"),
                      ev("last_line", ooms[-1].text, "kernel log")],
            fixes=[code_fix("find what grows (ps -eo pid,comm,rss --sort=-rss | head); "
                            "set memory limits (systemd MemoryMax=) on the culprit")],
            why=WHY_OOM))
    if mem is not None and mem.total_kb > 0:
        ratio = mem.available_kb / mem.total_kb
        if ratio < MEM_AVAIL_WARN:
            findings.append(Finding(
                id="memory-exhaustion",
                severity="critical" if ratio < MEM_AVAIL_CRITICAL else "warning",
                cause=RESOURCE,
                title=f"only {_pct(ratio)} of memory available "
                      f"({mem.available_kb // 1024:,} MiB of {mem.total_kb // 1024:,} MiB)",
                subject=subject("host"),
                evidence=[ev("mem_available_kb", mem.available_kb, "/proc/meminfo"),
                          ev("mem_total_kb", mem.total_kb, "/proc/meminfo")],
                fixes=[code_fix("find the largest processes (ps -eo pid,comm,rss --sort=-rss)")],
                why=WHY_OOM))
    return findings
