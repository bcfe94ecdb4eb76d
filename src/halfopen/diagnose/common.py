"""Helpers the rules share: grouping sockets by owner, fixes, numbers in words."""

from __future__ import annotations

import functools
import ipaddress
import shlex
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from ..model.container import Container
from ..model.finding import Evidence, Finding, Fix
from ..model.fixes import KeepaliveChange, KeepaliveSettings, KillChange, RlimitChange, SysctlChange, proposed_filter
from ..model.host import HOST
from ..model.identity import ProcessIdentity
from ..model.process import Process
from ..model.snapshot import Snapshot
from ..model.socket import Socket
from ..model.subject import Subject
from ..units import seconds  # noqa: F401  (the rules format durations with it)
from .bounded import Keys

SOCK_DIAG = "sock_diag"  # evidence source of socket counts (or procfs in the fallback)
TCP_INFO = "tcp_info"

# Keepalive we recommend when we retrofit it: first probe after 60 s idle,
# then every 10 s, give up after 6 unanswered probes (dead peer found in 2 min).
KEEPALIVE_IDLE_S = 60
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_COUNT = 6


def n(value: int) -> str:
    """A count with thousands separators: 4210 -> '4,210'."""
    return f"{value:,}"


def plural(count: int, word: str, words: str | None = None) -> str:
    """'1 socket', '4,210 sockets'."""
    return f"{n(count)} {word if count == 1 else (words or word + 's')}"


def owner(sock: Socket) -> tuple[int, str] | None:
    """The (pid, comm) holding the socket: the lowest pid when several share it."""
    owners = sock.owners
    if not owners:
        return None
    o = owners[0] if len(owners) == 1 else min(owners, key=lambda o: o.pid)
    return o.pid, o.comm


def by_owner(socks: Iterable[Socket]) -> dict[tuple[str, int | None, str], list[Socket]]:
    """Group sockets by (netns, pid, comm); unowned ones under pid None."""
    groups: dict[tuple[str, int | None, str], list[Socket]] = {}
    for s in socks:
        who = owner(s)
        key = (s.netns, who[0], who[1]) if who else (s.netns, None, "")
        groups.setdefault(key, []).append(s)
    return groups


def is_local_peer(sock: Socket) -> bool:
    """True when the peer is this host: loopback, or the same address as ours.

    Such a peer cannot vanish without the kernel knowing: its socket is here.
    """
    if sock.peer_addr == sock.local_addr:
        return True
    return _loopback(sock.peer_addr)


@functools.lru_cache(maxsize=65536)
def _loopback(addr: str) -> bool:
    """Is the address loopback (127/8, ::1, ::ffff:127.x)? Cached: many sockets, few peers."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def top(counter: Counter | Keys, k: int = 5) -> list[list]:
    """The k most common items as [item, count] pairs (JSON friendly)."""
    return [[item, count] for item, count in counter.most_common(k)]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def who(pid: int | None, comm: str, container: Container | None = None) -> str:
    """'nginx (pid 812)', 'nginx (pid 812, pod shop/web-7f9)'."""
    if pid is None:
        return "no process (orphaned or not visible)"
    return f"{comm} (pid {pid}, {container.phrase()})" if container else f"{comm} (pid {pid})"


def attribute(findings: list[Finding], processes: dict[int, Process]) -> None:
    """Name the container of each finding's process in its subject and title.

    The rules name a process with who(pid, comm); this names its container
    once for all of them, from the snapshot's processes.
    """
    for f in findings:
        pid = f.subject.pid
        proc = processes.get(pid) if pid is not None else None
        if pid is None or proc is None or proc.container is None:
            continue
        comm = f.subject.comm if f.subject.comm is not None else proc.comm
        f.subject = replace(f.subject, container=proc.container)
        f.title = f.title.replace(who(pid, comm), who(pid, comm, proc.container), 1)


def identify(findings: list[Finding], snapshot: Snapshot) -> None:
    """Record in each finding's subject who it is about, as the collector read it:
    the process's start time beside its pid (Process/ProcessLimits.start_time, read
    with its fds) and the namespace's inode and cookie beside its name
    (NamespaceHost); `halfopen fix` compares them before acting (model.identity).
    Nothing is added where nothing was recorded (a snapshot from before)."""
    hf = snapshot.host_facts
    limits = hf.processes if hf is not None else {}
    spaces = hf.namespaces if hf is not None else {}
    for f in findings:
        subj = f.subject
        pid = subj.pid
        if pid is not None and subj.start_time is None:
            seen = snapshot.processes.get(pid) or limits.get(pid)
            if seen is not None and seen.start_time is not None:
                subj = replace(subj, start_time=seen.start_time,
                               comm=seen.comm if subj.comm is None else subj.comm)
        space = spaces.get(subj.netns or HOST)
        if space is not None and space.inode is not None and subj.netns_inode is None:
            subj = replace(subj, netns_inode=space.inode, netns_cookie=space.cookie)
        f.subject = subj


def subject(netns: str, pid: int | None = None, comm: str = "", port: int | None = None,
            **more) -> Subject:
    """A finding's Subject: the process's comm goes with its pid."""
    return Subject(netns, pid, comm if pid is not None else None, port, **more)


def ev(what: str, value, source: str, note: str = "") -> Evidence:
    return Evidence(what, value, source, note)


# ---------------------------------------------------------------- fixes

def sysctl_fix(key: str, value: str | int, netns: str = "host", why: str = "") -> Fix:
    c = SysctlChange(key, str(value), netns)
    return Fix(c.action, c.command(), True, c.params(),
               why or f"set {key} = {c.value} (halfopen fix --persist also writes /etc/sysctl.d)")


def prlimit_fix(pid: int, soft: int, hard: int | None = None, why: str = "") -> Fix:
    c = RlimitChange(pid, soft, hard)
    return Fix(c.action, c.command(), True, c.params(),
               why or "raise the running process's RLIMIT_NOFILE (prlimit(2)); "
                      "/proc/PID/limits is read-only")


def systemd_limit_fix(pid: int, unit: str, nofile: int) -> Fix:
    """LimitNOFILE= in the process's systemd service, so the limit survives a restart.

    `unit` is the one its cgroup names (ProcessLimits.unit, read from the
    kernel), never built from comm: a process may call itself `$(sh /tmp/a)`,
    and root pastes this command. The name is shell-quoted all the same.
    Without a unit the fix says what to do in words, with no command.

    >>> systemd_limit_fix(812, "nginx.service", 4096).command.splitlines()[0]
    'systemctl edit nginx.service   # add:'
    >>> systemd_limit_fix(812, "", 4096).command
    'if pid 812 runs under a service manager, set LimitNOFILE=4096 in its unit (systemd: [Service] section; `systemctl status 812` names the unit)'
    """
    snippet = f"[Service]\nLimitNOFILE={nofile}\n"
    if not unit:
        return Fix("config", f"if pid {pid} runs under a service manager, set "
                             f"LimitNOFILE={nofile} in its unit (systemd: [Service] section; "
                             f"`systemctl status {pid}` names the unit)", False, {},
                   "make the limit survive a restart; its cgroup names no system service")
    file = f"/etc/systemd/system/{unit}.d/limits.conf"
    return Fix("config", f"systemctl edit {shlex.quote(unit)}   # add:\n{snippet}", False,
               {"file": file, "snippet": snippet},
               f"make the limit survive a restart ({unit}, from the process's cgroup)")


def keepalive_fix(pid: int, filter_words: str = "", idle: int = KEEPALIVE_IDLE_S,
                  interval: int = KEEPALIVE_INTERVAL_S, count: int = KEEPALIVE_COUNT,
                  user_timeout_ms: int | None = None, why: str = "") -> Fix:
    c = KeepaliveChange(ProcessIdentity(pid), KeepaliveSettings(idle, interval, count, user_timeout_ms),
                        proposed_filter(filter_words))
    return Fix(c.action, c.command(), True, c.params(),
               why or "retrofit TCP keepalive onto the running process's sockets "
                      "(pidfd_getfd + setsockopt, no restart)")


def kill_fix(filter_words: str, why: str = "") -> Fix:
    c = KillChange(proposed_filter(filter_words))
    return Fix(c.action, c.command(), True, c.params(),
               why or "SOCK_DESTROY: RST to the peer, TCP state freed; the owner's fd stays "
                      "open until it calls close()")


def code_fix(advice: str) -> Fix:
    return Fix("code", advice, False, {}, "application change")


def config_fix(file: str, snippet: str, why: str) -> Fix:
    return Fix("config", snippet, False, {"file": file, "snippet": snippet}, why)
