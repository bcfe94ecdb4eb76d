"""Host facts: counters, limits, tunables, conntrack and kernel log lines.

Everything here is a plain record filled by `halfopen.collect.host` and read by
the doctor's rules; nothing here does I/O. The kernel keeps some facts per
network namespace and some once per host:

    per namespace (NamespaceHost)          once per host (HostFacts)
    /proc/net/netstat, /proc/net/snmp      fs.file-nr, fs.file-max, fs.nr_open
    /proc/net/sockstat{,6} (see SockStat)  net.ipv4.tcp_mem, tcp_max_orphans
    net.ipv4.tcp_* / net.core.somaxconn    /proc/meminfo, the kernel log
    nf_conntrack count and stats           /proc/PID/limits, fd counts

A source that could not be read is absent (None or empty) and named in
`HostFacts.unavailable` as "SOURCE" (host-wide) or "SOURCE@NETNS" (per
namespace), with the reason. SOURCE is one of the `SOURCES` names below.

The records go into `Snapshot.host_facts` (not `Snapshot.host`, which has
always been the host name) and round-trip through JSON exactly.
"""

from __future__ import annotations

from dataclasses import asdict, field
from typing import Any

from halfopen.records import record

from .sysctls import SYSCTLS

# Names used as keys of HostFacts.unavailable (with "@NETNS" for per-namespace ones).
SOURCES = (
    "counters",       # /proc/net/netstat + /proc/net/snmp
    "sockstat",       # /proc/net/sockstat + sockstat6
    "tunables",       # /proc/sys/net/...
    "conntrack",      # /proc/sys/net/netfilter + /proc/net/stat/nf_conntrack
    "socket-tables",  # /proc/PID/net/{tcp,udp,unix,...} for the fd-leak scan
    "files",          # /proc/sys/fs/file-nr, file-max, nr_open
    "global-tunables",  # net.ipv4.tcp_mem, tcp_max_orphans (init namespace only)
    "memory",         # /proc/meminfo
    "limits",         # /proc/PID/limits + /proc/PID/fd
    "kernel-log",     # /dev/kmsg, else dmesg
)

HOST = "host"  # the label of the host's own network namespace (collect.netns names the others)


# ---------------------------------------------------------------- counters

@record
class NetCounters:
    """One sample of /proc/net/netstat and /proc/net/snmp of one namespace.

    `values` keys are "Group.Name" as the kernel prints them:
    "TcpExt.ListenOverflows", "Tcp.RetransSegs", "IpExt.InOctets". Values are
    the raw counts (event counts, segments, octets); a few Tcp ones are
    gauges (Tcp.CurrEstab) or constants (Tcp.MaxConn = -1).
    """

    sampled_at: float  # CLOCK_MONOTONIC, seconds (only differences mean anything)
    values: dict[str, int] = field(default_factory=dict)

    def get(self, key: str, default: int = 0) -> int:
        return self.values.get(key, default)


@record
class CounterRates:
    """Two NetCounters samples of one namespace, `window_s` seconds apart.

    delta[key] = second - first (counts over the window); per_s[key] =
    delta / window_s (counts per second). Only keys present in both samples.
    """

    window_s: float  # seconds between the two samples (measured, not asked)
    delta: dict[str, int] = field(default_factory=dict)
    per_s: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- sockstat

@record
class SockStat:
    """/proc/net/sockstat and sockstat6 of one namespace.

    Counts are sockets; `tcp_mem` and `udp_mem` are pages (PAGE_SIZE, the
    unit of net.ipv4.tcp_mem). In kernel 6.x `inuse`, `tw` and
    `sockets_used` are per namespace, while `tcp_orphan`, `tcp_mem` and
    `udp_mem` are host-wide (tcp_orphan_count and tcp_memory_allocated are
    global): every namespace shows the same numbers. `raw` keeps every line: {"TCP": {"inuse": 1, ...}, "TCP6": ...}.
    """

    sockets_used: int = 0  # all sockets of all families (sockets: used N)
    tcp_inuse: int = 0  # IPv4 TCP sockets in the tables (not TIME_WAIT)
    tcp_orphan: int = 0  # TCP sockets no process holds (closed, still sending/FIN)
    tcp_tw: int = 0  # TIME_WAIT sockets (IPv4 and IPv6)
    tcp_alloc: int = 0  # allocated TCP sockets, including those not yet in a table
    tcp_mem: int = 0  # pages allocated to TCP buffers, compare with tcp_mem
    udp_inuse: int = 0
    udp_mem: int = 0  # pages
    tcp6_inuse: int = 0
    udp6_inuse: int = 0
    raw: dict[str, dict[str, int]] = field(default_factory=dict)


# ---------------------------------------------------------------- tunables

@record(frozen=True)
class Default:
    value: str | None  # the kernel's default as /proc/sys prints it; None: computed at boot
    source: str  # where the default is set in the kernel tree


# Kernel defaults on 6.x, as /proc/sys prints them (tabs become single spaces),
# for the sysctls halfopen compares: from the one table, model.sysctls.
KERNEL_DEFAULTS: dict[str, Default] = {
    s.key: Default(s.default, s.source) for s in SYSCTLS.values() if s.source}


@record
class Tunables:
    """TCP sysctls as read in one namespace; None when the file is absent.

    Units: seconds for *_time, *_intvl, *_timeout; counts for retries,
    probes, backlogs and buckets; pages for tcp_mem (min, pressure, max);
    ports for ip_local_port_range (first, last inclusive). tcp_mem and
    tcp_max_orphans exist only in the initial namespace (host-wide values);
    inside other namespaces they are None here and live in
    HostFacts.global_tunables. `raw` maps every sysctl read, dotted name ->
    value with whitespace collapsed ("net.ipv4.tcp_mem" -> "287898 383867 575796"),
    the form KERNEL_DEFAULTS uses.
    """

    tcp_mem: tuple[int, int, int] | None = None  # pages: min, pressure, max
    tcp_max_orphans: int | None = None  # sockets
    tcp_max_tw_buckets: int | None = None  # sockets
    ip_local_port_range: tuple[int, int] | None = None  # first, last port
    somaxconn: int | None = None  # cap on listen() backlog
    tcp_max_syn_backlog: int | None = None  # SYN queue length cap
    tcp_syncookies: int | None = None  # 0 off, 1 on overflow, 2 always
    tcp_synack_retries: int | None = None
    tcp_syn_retries: int | None = None
    tcp_keepalive_time: int | None = None  # seconds idle before the first probe
    tcp_keepalive_intvl: int | None = None  # seconds between probes
    tcp_keepalive_probes: int | None = None  # unanswered probes before reset
    tcp_fin_timeout: int | None = None  # seconds in FIN_WAIT2 for orphans
    tcp_retries1: int | None = None
    tcp_retries2: int | None = None  # retransmissions before giving up (15 ~ 15 min)
    tcp_orphan_retries: int | None = None  # 0 means 8
    tcp_tw_reuse: int | None = None  # 0 off, 1 on, 2 loopback only
    tcp_abort_on_overflow: int | None = None  # 1: RST when the accept queue is full
    tcp_timestamps: int | None = None
    raw: dict[str, str] = field(default_factory=dict)

    def non_default(self) -> dict[str, tuple[str, Default]]:
        """Sysctls whose value differs from a fixed kernel default: name -> (value, default)."""
        out = {}
        for name, value in self.raw.items():
            default = KERNEL_DEFAULTS.get(name)
            if default is not None and default.value is not None and default.value != value:
                out[name] = (value, default)
        return out


# Sysctl name -> Tunables field, and how to parse it: "int" or a tuple length.
TUNABLE_FIELDS: dict[str, tuple[str, str | int]] = {
    s.key: (s.field, "int" if s.numbers == 1 else s.numbers) for s in SYSCTLS.values() if s.field}


# ---------------------------------------------------------------- files, memory, processes

@record
class FileLimits:
    """fs.file-nr, fs.file-max, fs.nr_open (host-wide), in file handles."""

    allocated: int  # file-nr first field: file handles in use
    free: int  # file-nr second field (always 0 since 2.6)
    file_max: int  # file-nr third field = fs.file-max: host-wide cap
    nr_open: int  # fs.nr_open: cap on any RLIMIT_NOFILE


@record
class Memory:
    """/proc/meminfo, in kibibytes (the kernel's "kB")."""

    total_kb: int  # MemTotal
    available_kb: int  # MemAvailable: estimate of memory usable without swapping


UNLIMITED = -1  # RLIMIT value "unlimited" in /proc/PID/limits


@record
class ProcessLimits:
    """One process's open fds against its RLIMIT_NOFILE."""

    pid: int
    comm: str
    netns: str  # label of the process's network namespace ("host", NAME, "net:[INODE]")
    fd_count: int  # open fds of every kind
    socket_fds: int  # of which sockets
    nofile_soft: int  # RLIMIT_NOFILE soft limit, fds; UNLIMITED (-1) if unlimited
    nofile_hard: int  # RLIMIT_NOFILE hard limit, fds; UNLIMITED (-1) if unlimited
    # the system service its cgroup names (collect.unit.read_system_unit), '' if none:
    # the only unit a fix may name; never derived from comm, which the process chooses
    unit: str = ""
    start_time: int | None = None  # clock ticks after boot, read with its fds; None: not recorded


# ---------------------------------------------------------------- conntrack

@record
class Conntrack:
    """nf_conntrack of one namespace; loaded=False with a reason when absent.

    count is per namespace; max (nf_conntrack_max) is host-wide. tcp_timeouts
    maps the TCP state as sysctl names it ("established", "close_wait",
    "time_wait", "fin_wait", "syn_sent", "syn_recv", "last_ack", "close",
    "unacknowledged", "max_retrans") to seconds. stats are the per-CPU rows of
    /proc/net/stat/nf_conntrack summed (events since boot: "drop",
    "early_drop", "insert_failed", "invalid", ...), `cpus` the rows summed.
    """

    loaded: bool
    reason: str = ""  # why it is not loaded / not readable
    count: int | None = None  # tracked connections
    max: int | None = None  # nf_conntrack_max, connections
    buckets: int | None = None  # hash buckets
    tcp_timeouts: dict[str, int] = field(default_factory=dict)  # state -> seconds
    stats: dict[str, int] = field(default_factory=dict)  # summed over CPUs
    cpus: int = 0


# ---------------------------------------------------------------- kernel log

KERNEL_LOG_KINDS = (
    "syn-flood",        # "Possible SYN flooding on port N. Sending cookies." / "Dropping request."
    "conntrack-full",   # "nf_conntrack: table full, dropping packet"
    "tcp-memory",       # "TCP: out of memory -- consider tuning tcp_mem"
    "orphans",          # "TCP: too many orphaned sockets"
    "socket-memory",    # "Out of socket memory"
    "oom-kill",         # "Out of memory: Killed process ..." / "oom-kill:..."
    "marker",           # a test's own pattern (see collect.host.kmsg)
)


@record
class KernelLogLine:
    """One kernel log line that matters to the doctor."""

    kind: str  # one of KERNEL_LOG_KINDS
    text: str  # the message, without the "pri,seq,usec,flags;" prefix
    wall_time: float  # seconds since the epoch: boot time (btime) + monotonic stamp
    uptime_s: float  # seconds since boot, as the kernel stamped it
    seq: int = -1  # /dev/kmsg sequence number, -1 from dmesg
    level: int = 6  # syslog level 0 (emerg) .. 7 (debug)
    port: int | None = None  # the port of a syn-flood line
    pid: int | None = None  # the killed process of an oom-kill line
    comm: str = ""  # its name


# ---------------------------------------------------------------- fd-leak source

@record
class StaleSocketFd:
    """A socket fd whose inode is in no kernel socket table of its namespace."""

    fd: int
    inode: int
    protocol: str  # sockfs "system.sockprotoname": "TCP", "TCPv6", "UDP", "UNIX", ...
    # True: the socket was shut down both ways (POLLHUP|POLLRDHUP: reset, SOCK_DESTROY,
    # keepalive gave up, connection closed); False: never connected or still open;
    # None: not checked
    hup: bool | None = None


@record
class StaleSocketFds:
    """One process's socket fds missing from the kernel's tables.

    For TCP this is the trace of a socket the kernel closed under the
    application (reset, keepalive gave up, SOCK_DESTROY) while the fd stays
    open. A socket that was created and never bound or connected is also in
    no table; `hup` tells the two apart (fd-leak counts only hup=True).
    Only protocols whose tables were read are checked
    (HostFacts.checked_protocols).
    """

    pid: int
    comm: str
    netns: str
    fds: list[StaleSocketFd] = field(default_factory=list)


# ---------------------------------------------------------------- grouping

@record
class NamespaceHost:
    """The per-namespace facts of one network namespace."""

    netns: str  # "host", the ip-netns name, or "net:[INODE]"
    counters: NetCounters | None = None  # the last sample
    rates: CounterRates | None = None  # None when window is 0 or a sample failed
    sockstat: SockStat | None = None
    tunables: Tunables | None = None
    conntrack: Conntrack | None = None
    # who the namespace is (model.identity): its nsfs inode and SO_NETNS_COOKIE, read
    # when its facts were; None: not recorded (a snapshot from before, a kernel < 5.14)
    inode: int | None = None
    cookie: int | None = None


@record
class HostFacts:
    """Everything the host collectors saw, per namespace and host-wide."""

    taken_at: str  # ISO-8601, UTC
    kernel: str  # uname release
    boot_time: float  # seconds since the epoch (/proc/stat btime)
    window_s: float  # the asked counter window, seconds (0: one sample)
    namespaces: dict[str, NamespaceHost] = field(default_factory=dict)  # by netns label
    files: FileLimits | None = None
    global_tunables: Tunables | None = None  # initial namespace: tcp_mem, tcp_max_orphans
    memory: Memory | None = None
    processes: dict[int, ProcessLimits] = field(default_factory=dict)  # by pid
    top_fd_pids: list[int] = field(default_factory=list)  # most fds first (in processes)
    kernel_log: list[KernelLogLine] = field(default_factory=list)
    kernel_log_source: str = ""  # "/dev/kmsg", "dmesg" or "" if none
    stale_socket_fds: list[StaleSocketFds] = field(default_factory=list)
    checked_protocols: list[str] = field(default_factory=list)  # sockprotonames checked for stale fds
    unavailable: dict[str, str] = field(default_factory=dict)  # source[@netns] -> reason

    def namespace(self, netns: str = "host") -> NamespaceHost | None:
        return self.namespaces.get(netns)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["namespaces"] = [asdict(n) for n in self.namespaces.values()]
        d["processes"] = [asdict(p) for p in self.processes.values()]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostFacts:
        return cls(
            taken_at=d["taken_at"], kernel=d["kernel"], boot_time=d["boot_time"],
            window_s=d["window_s"],
            namespaces={n["netns"]: _namespace(n) for n in d.get("namespaces", [])},
            files=_opt(FileLimits, d.get("files")),
            global_tunables=_tunables(d.get("global_tunables")),
            memory=_opt(Memory, d.get("memory")),
            processes={p["pid"]: ProcessLimits(**p) for p in d.get("processes", [])},
            top_fd_pids=list(d.get("top_fd_pids", [])),
            kernel_log=[KernelLogLine(**k) for k in d.get("kernel_log", [])],
            kernel_log_source=d.get("kernel_log_source", ""),
            stale_socket_fds=[
                StaleSocketFds(s["pid"], s["comm"], s["netns"],
                               [StaleSocketFd(**f) for f in s.get("fds", [])])
                for s in d.get("stale_socket_fds", [])],
            checked_protocols=list(d.get("checked_protocols", [])),
            unavailable=dict(d.get("unavailable", {})),
        )


def _opt(cls: Any, d: dict[str, Any] | None) -> Any:
    return None if d is None else cls(**d)


def _tunables(d: dict[str, Any] | None) -> Tunables | None:
    if d is None:
        return None
    d = dict(d)
    for name in ("tcp_mem", "ip_local_port_range"):
        if d.get(name) is not None:
            d[name] = tuple(d[name])
    return Tunables(**d)


def _namespace(d: dict[str, Any]) -> NamespaceHost:
    return NamespaceHost(
        netns=d["netns"],
        counters=_opt(NetCounters, d.get("counters")),
        rates=_opt(CounterRates, d.get("rates")),
        sockstat=_opt(SockStat, d.get("sockstat")),
        tunables=_tunables(d.get("tunables")),
        conntrack=_opt(Conntrack, d.get("conntrack")),
        inode=d.get("inode"), cookie=d.get("cookie"),
    )
