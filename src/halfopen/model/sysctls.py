"""Every sysctl halfopen reads, compares or sets: one table.

Each row says how the value is read (how many integers, into which Tunables
field), what the kernel's default is and where the kernel sets it (for
kernel-tuning), which values halfopen may write (for fix), and whether the
value is per network namespace or one for the host. Scope is the 6.x
kernel's: most net.ipv4 TCP keys and net.core.somaxconn live in
`struct netns_ipv4` / `netns_core`; tcp_mem and tcp_max_orphans are
host-wide and shown only in the initial namespace; fs.file-max and
nf_conntrack_max are host-wide (the latter read-only in other namespaces).

    >>> SYSCTLS["net.ipv4.tcp_keepalive_time"].default
    '7200'
    >>> [s.key for s in SYSCTLS.values() if s.field and not s.per_netns]
    ['net.ipv4.tcp_mem', 'net.ipv4.tcp_max_orphans']
"""

from __future__ import annotations

from typing import Optional

from halfopen.records import record

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1


@record(frozen=True)
class Sysctl:
    key: str  # dotted name, as sysctl(8) spells it
    field: Optional[str] = None  # the Tunables field it is read into; None: not read there
    numbers: int = 1  # integers in the value (ip_local_port_range 2, tcp_mem 3), ascending
    default: Optional[str] = None  # as /proc/sys prints it (tabs -> spaces); None: computed at boot
    source: str = ""  # where the kernel sets the default; "" when halfopen does not compare it
    valid: Optional[tuple[int, int]] = None  # what halfopen may write; None: it never writes it
    per_netns: bool = True  # False: one value for the host, set from the initial namespace


_TCP_SK_INIT = "net/ipv4/tcp_ipv4.c tcp_sk_init()"
_CT = "net/netfilter/nf_conntrack_proto_tcp.c tcp_timeouts[]"
_CT_DEFAULTS = {"established": ("432000", _CT + " (5 days)"), "close_wait": ("60", _CT),
                "time_wait": ("120", _CT), "fin_wait": ("120", _CT), "syn_recv": ("60", _CT)}
_CT_TIMEOUTS = ("established", "close_wait", "fin_wait", "time_wait", "syn_sent",
                "syn_recv", "last_ack", "close", "max_retrans", "unacknowledged")


def _s(key: str, *, read: bool = True, numbers: int = 1, default: Optional[str] = None,
       source: str = "", valid: Optional[tuple[int, int]] = None, per_netns: bool = True) -> Sysctl:
    field = key.rsplit(".", 1)[1] if read else None
    return Sysctl(key, field, numbers, default, source, valid, per_netns)


# In the order they are read (Tunables.raw keeps it).
SYSCTLS: dict[str, Sysctl] = {s.key: s for s in (
    _s("net.ipv4.tcp_mem", numbers=3, source="net/ipv4/tcp.c tcp_init_mem(): from nr_free_buffer_pages()",
       valid=(1, LONG_MAX), per_netns=False),  # pages: low pressure high
    _s("net.ipv4.tcp_max_orphans", source="net/ipv4/tcp.c tcp_init(): ehash entries / 2",
       valid=(0, INT_MAX), per_netns=False),
    _s("net.ipv4.tcp_max_tw_buckets", source="net/ipv4/tcp_ipv4.c tcp_sk_init(): ehash entries / 2",
       valid=(0, INT_MAX)),
    _s("net.ipv4.ip_local_port_range", numbers=2, default="32768 60999",
       source="net/ipv4/af_inet.c inet_init_net()", valid=(1, 65535)),
    _s("net.core.somaxconn", default="4096", source="include/linux/socket.h SOMAXCONN (since 5.4)",
       valid=(0, INT_MAX)),
    _s("net.ipv4.tcp_max_syn_backlog",
       source="net/ipv4/tcp_ipv4.c tcp_sk_init(): max(128, ehash entries / 128)", valid=(1, INT_MAX)),
    _s("net.ipv4.tcp_syncookies", default="1", source=_TCP_SK_INIT, valid=(0, 2)),
    _s("net.ipv4.tcp_synack_retries", default="5", source="include/net/tcp.h TCP_SYNACK_RETRIES",
       valid=(0, 255)),
    _s("net.ipv4.tcp_syn_retries", default="6", source="include/net/tcp.h TCP_SYN_RETRIES"),
    _s("net.ipv4.tcp_keepalive_time", default="7200",
       source="include/net/tcp.h TCP_KEEPALIVE_TIME (2 hours)", valid=(1, 32767)),  # MAX_TCP_KEEPIDLE
    _s("net.ipv4.tcp_keepalive_intvl", default="75", source="include/net/tcp.h TCP_KEEPALIVE_INTVL",
       valid=(1, 32767)),  # MAX_TCP_KEEPINTVL
    _s("net.ipv4.tcp_keepalive_probes", default="9", source="include/net/tcp.h TCP_KEEPALIVE_PROBES",
       valid=(1, 127)),  # MAX_TCP_KEEPCNT
    _s("net.ipv4.tcp_fin_timeout", default="60", source="include/net/tcp.h TCP_FIN_TIMEOUT",
       valid=(1, INT_MAX)),
    _s("net.ipv4.tcp_retries1", default="3", source="include/net/tcp.h TCP_RETR1"),
    _s("net.ipv4.tcp_retries2", default="15", source="include/net/tcp.h TCP_RETR2", valid=(0, 255)),
    _s("net.ipv4.tcp_orphan_retries", default="0", source=_TCP_SK_INIT + " (0 means 8)"),
    _s("net.ipv4.tcp_tw_reuse", default="2", source=_TCP_SK_INIT + " (2: loopback only)",
       valid=(0, 2)),
    _s("net.ipv4.tcp_abort_on_overflow", default="0", source=_TCP_SK_INIT, valid=(0, 1)),
    _s("net.ipv4.tcp_timestamps", default="1", source=_TCP_SK_INIT, valid=(0, 2)),
    _s("net.ipv4.tcp_sack", read=False, default="1", source=_TCP_SK_INIT),
    _s("net.ipv4.tcp_window_scaling", read=False, default="1", source=_TCP_SK_INIT),
    _s("fs.file-max", read=False, valid=(1, LONG_MAX), per_netns=False),
    _s("net.netfilter.nf_conntrack_max", read=False, valid=(0, INT_MAX), per_netns=False),
    *(_s(f"net.netfilter.nf_conntrack_tcp_timeout_{t}", read=False,
         default=_CT_DEFAULTS.get(t, (None, ""))[0], source=_CT_DEFAULTS.get(t, (None, ""))[1],
         valid=(0, INT_MAX))
      for t in _CT_TIMEOUTS),
)}


def default_numbers(key: str) -> tuple[int, ...]:
    """A sysctl's kernel default as integers: the one place the defaults are typed.

    >>> default_numbers("net.ipv4.ip_local_port_range"), default_numbers("net.ipv4.tcp_keepalive_time")
    ((32768, 60999), (7200,))
    """
    default = SYSCTLS[key].default
    assert default is not None, f"{key} has no fixed default"
    return tuple(int(x) for x in default.split())


# ip_local_port_range's default (net/ipv4/af_inet.c inet_init_net): the ephemeral
# ports when a namespace's own range was not read (the filter's `autobound`, TIME_WAIT)
DEFAULT_PORT_RANGE: tuple[int, int] = default_numbers("net.ipv4.ip_local_port_range")  # type: ignore[assignment]
