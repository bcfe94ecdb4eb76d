"""Host collectors: counters, sockstat, tunables, conntrack, limits, kernel log.

One entry point, `collect_host`, used by the doctor. Each source that fails
(not root, module missing, file absent) is named in `HostFacts.unavailable`
with the reason and the rest still runs. Everything is read-only.

Modules, one idea each: pure parsers (text in, record out; malformed input
raises ValueError naming file and line) next to readers that take a `proc`
root, so a recorded /proc tree replays in tests:

    counters   /proc/net/netstat + snmp, rates over a window
    sockstat   /proc/net/sockstat + sockstat6
    tunables   /proc/sys/net TCP sysctls
    conntrack  /proc/sys/net/netfilter, /proc/net/stat/nf_conntrack
    files      fs.file-nr, file-max, nr_open, /proc/meminfo, btime
    limits     /proc/PID/fd and /proc/PID/limits
    stalefds   socket fds missing from every socket table (fd-leak)
    kmsg       /dev/kmsg (dmesg fallback), the lines that matter
"""

from __future__ import annotations

import datetime
import os
import re
import time
from collections.abc import Callable, Iterable

from ...errors import HalfopenError
from ...model.host import HostFacts, NamespaceHost, NetCounters, ProcessLimits, Tunables
from .. import netns as netns_mod
from . import conntrack, counters, files, kmsg, limits, sockstat, stalefds, tunables

__all__ = ["collect_host"]

_FAILS = (OSError, ValueError, HalfopenError)
GLOBAL_TUNABLES = ("net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return f"permission denied ({exc.filename or exc}): not root?"
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or exc} does not exist"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}"
    return str(exc)


class _Run:
    """Runs sources, recording failures in `unavailable`."""

    def __init__(self) -> None:
        self.unavailable: dict[str, str] = {}

    def __call__(self, key: str, fn: Callable, *args, **kw):
        try:
            return fn(*args, **kw)
        except _FAILS as exc:
            self.unavailable[key] = _reason(exc)
            return None


def _net_root(proc: str) -> str:
    """Where net/ files of the calling thread's namespace are (thread-self when live)."""
    ts = f"{proc}/thread-self"
    return ts if os.path.isdir(f"{ts}/net") else proc


def collect_host(namespaces: Iterable[netns_mod.Namespace] | None = None,
                 pids: Iterable[int] | None = None, window: float = 3.0, *,
                 proc: str = "/proc", kmsg_path: str = "/dev/kmsg", top: int = 10,
                 kmsg_patterns: dict[str, re.Pattern[str]] = kmsg.PATTERNS,
                 stale_fds: bool = True, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> HostFacts:
    """Collect HostFacts.

    namespaces: where to read the per-namespace facts (default: our own, "host").
    pids: processes whose fd counts and RLIMIT_NOFILE to report (e.g. owners of
        TCP sockets); the `top` processes by fd count and any holder of stale
        socket fds are added.
    window: seconds between the two counter samples; 0 takes one sample, no rates.
    proc: the /proc root; a recorded tree replays only the host namespace.
    """
    if window < 0:
        raise ValueError(f"window must be >= 0 seconds, not {window}")
    run = _Run()
    uname = os.uname()
    live = proc == "/proc"
    if namespaces is None:
        namespaces = [netns_mod.current(proc)] if live else []
    namespaces = list(namespaces)
    taken_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    btime = run("boot-time", files.read_btime, proc)
    facts = HostFacts(taken_at=taken_at, kernel=uname.release,
                      boot_time=float(btime) if btime is not None else 0.0, window_s=window)
    hosts = {ns.name: NamespaceHost(ns.name) for ns in namespaces} if live \
        else {"host": NamespaceHost("host")}
    firsts: dict[str, NetCounters | None] = {}

    def in_ns(fn: Callable[[str, NamespaceHost], None]) -> None:
        if not live:
            fn(proc, hosts["host"])
            return
        for ns in namespaces:
            try:
                with netns_mod.entered(ns, proc):
                    fn(_net_root(proc), hosts[ns.name])
            except HalfopenError as exc:
                run.unavailable[f"netns@{ns.name}"] = str(exc)

    # 1. first counter sample everywhere, then the rest while the window runs
    def first(net_root: str, nh: NamespaceHost) -> None:
        firsts[nh.netns] = run(f"counters@{nh.netns}", counters.read_counters, net_root, clock)
        nh.counters = firsts[nh.netns]
    in_ns(first)
    started = clock()

    def per_ns(net_root: str, nh: NamespaceHost) -> None:
        n = nh.netns
        nh.sockstat = run(f"sockstat@{n}", sockstat.read_sockstat, net_root)
        nh.tunables = run(f"tunables@{n}", tunables.read_tunables, f"{proc}/sys")
        nh.conntrack = run(f"conntrack@{n}", conntrack.read_conntrack, proc, net_root)
        if nh.conntrack is not None and not nh.conntrack.loaded:
            run.unavailable[f"conntrack@{n}"] = nh.conntrack.reason
    in_ns(per_ns)

    facts.global_tunables = run("global-tunables", tunables.read_tunables, f"{proc}/sys",
                                GLOBAL_TUNABLES)
    if facts.global_tunables is not None and facts.global_tunables == Tunables():
        run.unavailable["global-tunables"] = \
            "net.ipv4.tcp_mem absent: not running in the initial network namespace"
        facts.global_tunables = None
    facts.files = run("files", files.read_files, proc)
    facts.memory = run("memory", files.read_memory, proc)
    _processes(run, facts, pids, top, proc, stale_fds)
    if btime is not None:
        got = run("kernel-log", kmsg.collect, float(btime), kmsg_path, kmsg_patterns)
        if got is not None:
            facts.kernel_log, facts.kernel_log_source, _ = got
    # 2. second sample once the window has passed
    if window > 0:
        left = window - (clock() - started)
        if left > 0:
            sleep(left)

        def second(net_root: str, nh: NamespaceHost) -> None:
            a = firsts.get(nh.netns)
            b = run(f"counters@{nh.netns}", counters.read_counters, net_root, clock)
            if a is not None and b is not None:
                nh.counters = b
                nh.rates = run(f"counters@{nh.netns}", counters.rates, a, b)
        in_ns(second)
    facts.namespaces = hosts
    facts.unavailable = run.unavailable
    return facts


def _processes(run: _Run, facts: HostFacts, pids: Iterable[int] | None, top: int,
               proc: str, stale_fds: bool) -> None:
    """fd counts, RLIMIT_NOFILE, top fd users and stale socket fds, from one fd scan."""
    got = run("limits", limits.scan_fds, proc)
    if got is None:
        return
    scans, denied = got
    if denied:
        run.unavailable["limits"] = f"{denied} processes' fds not readable: not root?"
    by_pid = {s.pid: s for s in scans}
    labels: dict[int, str] = {}

    def label(inode: int) -> str:
        if inode not in labels:
            labels[inode] = netns_mod.label(inode, proc) if inode else "?"
        return labels[inode]

    if stale_fds:
        found = run("socket-tables", stalefds.find_stale, scans, label, proc)
        if found is not None:
            facts.stale_socket_fds = found
            facts.checked_protocols = list(stalefds.CHECKED_PROTOCOLS)
    ranked = sorted(scans, key=lambda s: (-s.fd_count, s.pid))[:top]
    facts.top_fd_pids = [s.pid for s in ranked]
    wanted = list(dict.fromkeys([*(pids or []), *facts.top_fd_pids,
                                 *(s.pid for s in facts.stale_socket_fds)]))
    for pid in wanted:
        scan = by_pid.get(pid)
        if scan is None:
            continue
        nofile = run(f"limits@{pid}", limits.read_nofile, pid, proc)
        if nofile is None:
            continue
        facts.processes[pid] = ProcessLimits(
            pid=pid, comm=scan.comm, netns=label(scan.netns_inode), fd_count=scan.fd_count,
            socket_fds=len(scan.socket_fds), nofile_soft=nofile[0], nofile_hard=nofile[1])
