"""Host facts the watch needs beside sockets: conntrack, file-nr, TCP counters, fd limits.

Tiny readers over /proc with the root as a parameter (tests pass a recorded
tree). When a snapshot carries the host collectors' facts
(Snapshot.host_facts, halfopen.model.host) `from_model` takes them from
there instead; these readers are the fallback and read the same files.
A value the kernel does not offer (no nf_conntrack module) is None.
"""

from __future__ import annotations

from dataclasses import field

from halfopen.records import record

# The counters the rules use (DESIGN.md), "Group.Name" as in /proc/net/{netstat,snmp}.
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


def parse_counters(text: str, wanted: tuple[str, ...] = COUNTERS) -> dict[str, int]:
    """Pair header and value lines of /proc/net/netstat or /proc/net/snmp.

    >>> parse_counters("TcpExt: ListenOverflows ListenDrops\\nTcpExt: 3 5\\n", ("TcpExt.ListenDrops",))
    {'TcpExt.ListenDrops': 5}
    """
    out: dict[str, int] = {}
    lines = text.splitlines()
    for head, values in zip(lines[::2], lines[1::2]):
        group, _, names = head.partition(":")
        vgroup, _, nums = values.partition(":")
        if group != vgroup:
            raise ValueError(f"counter lines out of step: {head[:40]!r} / {values[:40]!r}")
        for name, value in zip(names.split(), nums.split()):
            key = f"{group}.{name}"
            if key in wanted:
                out[key] = int(value)
    return out


def read_counters(proc: str = "/proc") -> dict[str, int]:
    out: dict[str, int] = {}
    for name in ("net/netstat", "net/snmp"):
        try:
            with open(f"{proc}/{name}") as f:
                out.update(parse_counters(f.read()))
        except OSError:
            continue
    return out


def read(proc: str = "/proc") -> HostStats:
    """Read this network namespace's host facts."""
    nr = None
    try:
        with open(f"{proc}/sys/fs/file-nr") as f:
            allocated, _free, _max = f.read().split()
            nr = int(allocated)
    except (OSError, ValueError):
        pass
    return HostStats(
        conntrack_count=_read_int(f"{proc}/sys/net/netfilter/nf_conntrack_count"),
        conntrack_max=_read_int(f"{proc}/sys/net/netfilter/nf_conntrack_max"),
        file_nr=nr, file_max=_read_int(f"{proc}/sys/fs/file-max"),
        counters=read_counters(proc),
    )


def parse_nofile(text: str) -> int | None:
    """The soft RLIMIT_NOFILE from /proc/PID/limits; None for unlimited.

    >>> parse_nofile("Max open files            1024                 524288               files\\n")
    1024
    """
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line[len("Max open files"):].split()[0]
            return None if soft == "unlimited" else int(soft)
    return None


def fd_limit(pid: int, proc: str = "/proc") -> int | None:
    """Soft RLIMIT_NOFILE of a process; None if unreadable or gone."""
    try:
        with open(f"{proc}/{pid}/limits") as f:
            return parse_nofile(f.read())
    except (OSError, ValueError):
        return None


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
