"""Host facts the watch needs beside sockets: conntrack, file-nr, TCP counters, fd limits.

Tiny readers over /proc with the root as a parameter (tests pass a recorded
tree), parsing with collect.host's parsers. When a snapshot carries the host
collectors' facts (Snapshot.host_facts, halfopen.model.host) `from_model`
takes them from there instead; these readers are the fallback.
A value the kernel does not offer (no nf_conntrack module) is None.
"""

from __future__ import annotations

from dataclasses import field

from halfopen.records import record

from ..collect.host import _text, counters, files, limits
from ..model.host import UNLIMITED

# The counters the rules use (docs/design.md), "Group.Name" as in /proc/net/{netstat,snmp}.
COUNTERS = (
    "TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.SyncookiesSent",
    "TcpExt.SyncookiesRecv", "TcpExt.SyncookiesFailed", "TcpExt.TCPReqQFullDrop",
    "TcpExt.TCPReqQFullDoCookies", "TcpExt.TCPTimeWaitOverflow", "TcpExt.TCPAbortOnMemory",
    "TcpExt.TCPAbortOnTimeout", "TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnData",
    "TcpExt.TCPAbortOnLinger", "TcpExt.TCPAbortFailed", "TcpExt.TCPKeepAlive",
    "TcpExt.TW",
    "Tcp.ActiveOpens", "Tcp.PassiveOpens", "Tcp.AttemptFails", "Tcp.EstabResets",
    "Tcp.RetransSegs", "Tcp.InErrs", "Tcp.OutRsts",
)


@record
class HostStats:
    conntrack_count: int | None = None
    conntrack_max: int | None = None
    file_nr: int | None = None  # allocated file handles, system-wide
    file_max: int | None = None
    counters: dict[str, int] = field(default_factory=dict)  # "TcpExt.ListenOverflows" -> n


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_counters(proc: str = "/proc") -> dict[str, int]:
    """The COUNTERS of /proc/net/netstat and /proc/net/snmp (collect.host's parser)."""
    out: dict[str, int] = {}
    for name in counters.FILES:
        try:
            values = counters.parse_pairs(_text.read(f"{proc}/net/{name}"), f"{proc}/net/{name}")
        except OSError:
            continue
        out.update((k, v) for k, v in values.items() if k in COUNTERS)
    return out


def read(proc: str = "/proc") -> HostStats:
    """Read this network namespace's host facts."""
    path = f"{proc}/sys/fs/file-nr"
    try:
        nr: int | None = files.parse_file_nr(_text.read(path), path)[0]
    except (OSError, ValueError):
        nr = None
    return HostStats(
        conntrack_count=_read_int(f"{proc}/sys/net/netfilter/nf_conntrack_count"),
        conntrack_max=_read_int(f"{proc}/sys/net/netfilter/nf_conntrack_max"),
        file_nr=nr, file_max=_read_int(f"{proc}/sys/fs/file-max"),
        counters=read_counters(proc),
    )


def fd_limit(pid: int, proc: str = "/proc") -> int | None:
    """Soft RLIMIT_NOFILE of a process; None if unlimited, unreadable or gone.

    >>> fd_limit(1, "/nonexistent") is None
    True
    """
    try:
        soft, _hard = limits.read_nofile(pid, proc)
    except (OSError, ValueError):
        return None
    return None if soft == UNLIMITED else soft


def from_model(hf, netns: str = "host") -> HostStats:
    """The watch's view of the host collectors' HostFacts (halfopen.model.host)."""
    ns = hf.namespace(netns) or next(iter(hf.namespaces.values()), None)
    counters: dict[str, int] = {}
    ct_count = ct_max = None
    if ns is not None:
        if ns.counters is not None:
            counters = {k: v for k, v in ns.counters.values.items() if k in COUNTERS}
        if ns.conntrack is not None and ns.conntrack.loaded:
            ct_count, ct_max = ns.conntrack.count, ns.conntrack.max
    files = hf.files
    return HostStats(ct_count, ct_max, files.allocated if files else None,
                     files.file_max if files else None, counters)
