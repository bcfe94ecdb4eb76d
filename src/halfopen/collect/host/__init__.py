"""Host collectors: counters, sockstat, tunables, conntrack, limits, kernel log.

`HostRun` is what the doctor uses (collect.take.take_full): the steps
apart, so the socket dump and the fd scan run inside the counter window;
`collect_host` runs them at once (the recorded /proc trees replay through it
in tests/host). Each source that fails
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
from dataclasses import field

from halfopen.records import record

from ...errors import HalfopenError
from ...kernel import current_identity, procfs
from ...model.host import HostFacts, NamespaceHost, NetCounters, ProcessLimits, Tunables
from ...model.sysctls import SYSCTLS
from .. import netns as netns_mod
from .. import owners
from ..unit import read_system_unit
from . import conntrack, counters, files, kmsg, limits, sockstat, stalefds, tunables

__all__ = ["collect_host"]

_FAILS = (OSError, ValueError, HalfopenError)
GLOBAL_TUNABLES = tuple(s.key for s in SYSCTLS.values() if s.field and not s.per_netns)


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
    run = HostRun.begin(namespaces, window, proc=proc, kmsg_path=kmsg_path, top=top,
                        kmsg_patterns=kmsg_patterns, stale_fds=stale_fds, clock=clock,
                        sleep=sleep)
    run.scan_fds()
    return run.finish(pids)


@record
class HostRun:
    """collect_host in steps, so the caller can work inside the counter window.

    HostRun.begin(...) takes the first counter sample; scan_fds() reads every
    process's fds once (its result also serves as the socket owner map);
    finish(pids) reads the rest, waits out the window and takes the second
    sample. collect.take.take dumps the sockets between scan_fds() and finish(),
    so the window's two samples bracket the socket dump. The constructor only
    holds the state; live is False for a recorded /proc tree, which replays
    the host namespace only.
    """

    namespaces: list[netns_mod.Namespace]
    window: float
    facts: HostFacts
    btime: int | None
    live: bool = True
    proc: str = "/proc"
    kmsg_path: str = "/dev/kmsg"
    top: int = 10
    kmsg_patterns: dict[str, re.Pattern[str]] = field(default_factory=lambda: kmsg.PATTERNS)
    stale_fds: bool = True
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    run: _Run = field(default_factory=_Run)
    hosts: dict[str, NamespaceHost] = field(default_factory=dict)
    firsts: dict[str, NetCounters | None] = field(default_factory=dict)
    fd_scan: tuple[list[owners.FdScan], int] | None = None
    started: float = 0.0

    @classmethod
    def begin(cls, namespaces: Iterable[netns_mod.Namespace] | None = None,
              window: float = 3.0, *, proc: str = "/proc", live: bool | None = None,
              kmsg_path: str = "/dev/kmsg", top: int = 10,
              kmsg_patterns: dict[str, re.Pattern[str]] = kmsg.PATTERNS,
              stale_fds: bool = True, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> HostRun:
        """Start a run: the first counter sample in every namespace.

        live: None reads a tree at `proc` other than /proc as a recording.
        """
        if window < 0:
            raise ValueError(f"window must be >= 0 seconds, not {window}")
        if live is None:
            live = proc == "/proc"
        run = _Run()
        if namespaces is None:
            namespaces = [netns_mod.current(proc)] if live else []
        spaces = list(namespaces)
        taken_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        btime = run("boot-time", procfs.boot_time, proc)
        facts = HostFacts(taken_at=taken_at, kernel=os.uname().release,
                          boot_time=float(btime) if btime is not None else 0.0, window_s=window)
        hosts = {ns.name: NamespaceHost(ns.name, inode=ns.inode) for ns in spaces} if live \
            else {"host": NamespaceHost("host")}
        self = cls(spaces, window, facts, btime, live, proc, kmsg_path, top, kmsg_patterns,
                   stale_fds, clock, sleep, run, hosts)

        # 1. first counter sample everywhere, then the rest while the window runs
        def first(net_root: str, nh: NamespaceHost) -> None:
            self.firsts[nh.netns] = run(f"counters@{nh.netns}", counters.read_counters,
                                        net_root, clock)
            nh.counters = self.firsts[nh.netns]
            if self.live:  # inside it now: who it is, beside its name (model.identity)
                nh.cookie = run(f"netns-cookie@{nh.netns}", current_identity.netns_cookie)
        self._in_ns(first)
        self.started = clock()
        return self

    def _in_ns(self, fn: Callable[[str, NamespaceHost], None]) -> None:
        if not self.live:
            fn(self.proc, self.hosts["host"])
            return
        for ns in self.namespaces:
            try:
                with netns_mod.entered(ns, self.proc):
                    fn(_net_root(self.proc), self.hosts[ns.name])
            except (HalfopenError, OSError) as exc:  # OSError: it vanished (setns EINVAL)
                self.run.unavailable[f"netns@{ns.name}"] = str(exc)

    def scan_fds(self, scanner: Callable[[], tuple[list[owners.FdScan], int]] | None = None
                 ) -> tuple[list[owners.FdScan], int] | None:
        """Every process's fds, read once: (scans, processes not readable), None if
        failed. `scanner` reads them instead of owners.scan_fds (the exporter's
        owner cache, OwnerCache.full_scan: one scan fills both)."""
        if scanner is None:
            self.fd_scan = self.run("limits", owners.scan_fds, self.proc)
        else:
            self.fd_scan = self.run("limits", scanner)
        return self.fd_scan

    def finish(self, pids: Iterable[int] | None = None,
               dumped: stalefds.DumpedTcp | None = None) -> HostFacts:
        """The rest of the facts, then the second counter sample once the window is over.

        dumped: what a dump of every TCP socket after scan_fds() held (stalefds.DumpedTcp).
        """
        run, proc, facts = self.run, self.proc, self.facts

        def per_ns(net_root: str, nh: NamespaceHost) -> None:
            n = nh.netns
            nh.sockstat = run(f"sockstat@{n}", sockstat.read_sockstat, net_root)
            nh.tunables = run(f"tunables@{n}", tunables.read_tunables, f"{proc}/sys")
            nh.conntrack = run(f"conntrack@{n}", conntrack.read_conntrack, proc, net_root)
            if nh.conntrack is not None and not nh.conntrack.loaded:
                run.unavailable[f"conntrack@{n}"] = nh.conntrack.reason
        self._in_ns(per_ns)

        facts.global_tunables = run("global-tunables", _global_tunables, proc, self.live)
        facts.files = run("files", files.read_files, proc)
        facts.memory = run("memory", files.read_memory, proc)
        if self.fd_scan is None and "limits" not in run.unavailable:
            self.scan_fds()
        _processes(run, facts, self.fd_scan, pids, self.top, proc, self.stale_fds, dumped)
        if self.btime is not None:
            got = run("kernel-log", kmsg.collect, float(self.btime), self.kmsg_path,
                      self.kmsg_patterns)
            if got is not None:
                facts.kernel_log, facts.kernel_log_source, _ = got
        # 2. second sample once the window has passed
        if self.window > 0:
            left = self.window - (self.clock() - self.started)
            if left > 0:
                self.sleep(left)

            def second(net_root: str, nh: NamespaceHost) -> None:
                a = self.firsts.get(nh.netns)
                b = run(f"counters@{nh.netns}", counters.read_counters, net_root, self.clock)
                if a is not None and b is not None:
                    nh.counters = b
                    nh.rates = run(f"counters@{nh.netns}", counters.rates, a, b)
            self._in_ns(second)
        facts.namespaces = self.hosts
        facts.unavailable = run.unavailable
        return facts


def _global_tunables(proc: str, live: bool) -> Tunables | None:
    """tcp_mem and tcp_max_orphans: host-wide, in /proc/sys of the initial namespace only.

    Inside another network namespace (`ip netns exec X halfopen doctor`) they
    are absent; as root we then read them from the initial namespace, entering
    it (the one of pid 1, else of any process that has them) for the read;
    not permitted: HalfopenError with the reason (the rules say "unknown").
    """
    sys_root = f"{proc}/sys"
    got = tunables.read_tunables(sys_root, GLOBAL_TUNABLES)
    if got != Tunables():
        return got
    why = "net.ipv4.tcp_mem absent: not running in the initial network namespace"
    if not live:
        raise HalfopenError(why)
    # pid 1's namespace is the initial one on a normal host; in a container or
    # when /proc/1 is not ours to read, any process in the initial namespace will
    # do: it is the one whose /proc/sys has tcp_mem.
    here = netns_mod.current(proc).inode
    tried = [netns_mod.Namespace("init", 0, procfs.ns_path(1, proc))]
    tried += [ns for ns in netns_mod.all_namespaces(proc) if ns.inode != here]
    errors: list[str] = []
    for ns in tried:
        try:
            with netns_mod.entered(ns, proc):
                got = tunables.read_tunables(sys_root, GLOBAL_TUNABLES)
        except (OSError, HalfopenError) as exc:
            errors.append(f"{ns.path}: {exc.strerror if isinstance(exc, OSError) else exc}")
            continue
        if got != Tunables():
            return got
    if errors and len(errors) == len(tried):
        raise HalfopenError(f"{why}, and the initial one could not be entered "
                            f"({errors[0]}): not root?")
    raise HalfopenError(f"{why}, and no readable namespace has it")


def _processes(run: _Run, facts: HostFacts, got, pids: Iterable[int] | None, top: int,
               proc: str, stale_fds: bool, dumped: stalefds.DumpedTcp | None) -> None:
    """fd counts, RLIMIT_NOFILE, top fd users and stale socket fds, from one fd scan."""
    if got is None:
        return
    scans, denied = got
    if denied:
        run.unavailable["limits"] = f"{denied} processes' fds not readable: not root?"
    by_pid = {s.pid: s for s in scans}
    labels: dict[int, str] = {}
    inside: dict[int, int] = {}  # namespace inode -> a pid in it (names it after its pod)
    for s in scans:
        inside.setdefault(s.netns_inode, s.pid)

    def label(inode: int) -> str:
        if inode not in labels:
            labels[inode] = (netns_mod.label(inode, proc, pid=inside.get(inode)) if inode
                             else "?")
        return labels[inode]

    if stale_fds:
        notes: list[str] = []
        found = run("socket-tables", stalefds.find_stale, scans, label, proc,
                    dumped=dumped, notes=notes)
        if notes:
            run.unavailable["socket-tables"] = "; ".join(notes)
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
            socket_fds=len(scan.socket_fds), nofile_soft=nofile[0], nofile_hard=nofile[1],
            unit=read_system_unit(pid, proc), start_time=scan.start_time)
