"""The sysctls halfopen may set: which, their valid values, read and write.

Values are written straight to /proc/sys (no sysctl(8), no shell), inside the
finding's network namespace for the per-namespace keys. Scope per key from
the kernel (6.x): most net.ipv4 TCP keys and net.core.somaxconn live in
`struct netns_ipv4` / `netns_core`, one value per namespace;
tcp_max_orphans is one host-wide value (shown only in the initial
namespace); nf_conntrack_max is host-wide and read-only in other namespaces;
tcp_mem (three numbers, pages) and fs.file-max are host-wide. Every key a
doctor rule suggests must be here (tests/fix/test_fix_from_doctor.py checks).
"""

from __future__ import annotations

import os

from halfopen.records import record

from ..collect import netns
from ..errors import UsageError

PROC_SYS = "/proc/sys"
INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1


@record(frozen=True)
class Knob:
    key: str  # dotted name, as sysctl(8) spells it
    low: int
    high: int
    per_netns: bool  # False: one value for the host, set from the host namespace
    pair: bool = False  # two numbers, low <= high (ip_local_port_range)
    numbers: int = 0  # how many numbers when not 1 or 2 (tcp_mem: three, ascending)


_CONNTRACK_TIMEOUTS = ("established", "close_wait", "fin_wait", "time_wait", "syn_sent",
                       "syn_recv", "last_ack", "close", "max_retrans", "unacknowledged")

KNOBS: dict[str, Knob] = {k.key: k for k in (
    Knob("net.ipv4.tcp_keepalive_time", 1, 32767, True),  # MAX_TCP_KEEPIDLE
    Knob("net.ipv4.tcp_keepalive_intvl", 1, 32767, True),  # MAX_TCP_KEEPINTVL
    Knob("net.ipv4.tcp_keepalive_probes", 1, 127, True),  # MAX_TCP_KEEPCNT
    Knob("net.ipv4.tcp_syncookies", 0, 2, True),
    Knob("net.ipv4.tcp_max_syn_backlog", 1, INT_MAX, True),
    Knob("net.ipv4.tcp_synack_retries", 0, 255, True),
    Knob("net.ipv4.tcp_retries2", 0, 255, True),
    Knob("net.ipv4.tcp_abort_on_overflow", 0, 1, True),
    Knob("net.ipv4.tcp_timestamps", 0, 2, True),
    Knob("net.core.somaxconn", 0, INT_MAX, True),
    Knob("net.ipv4.tcp_fin_timeout", 1, INT_MAX, True),
    Knob("net.ipv4.tcp_tw_reuse", 0, 2, True),
    Knob("net.ipv4.tcp_max_tw_buckets", 0, INT_MAX, True),
    Knob("net.ipv4.ip_local_port_range", 1, 65535, True, pair=True),
    Knob("net.ipv4.tcp_max_orphans", 0, INT_MAX, False),
    Knob("net.ipv4.tcp_mem", 1, LONG_MAX, False, numbers=3),  # pages: low pressure high
    Knob("fs.file-max", 1, LONG_MAX, False),
    Knob("net.netfilter.nf_conntrack_max", 0, INT_MAX, False),
    *(Knob(f"net.netfilter.nf_conntrack_tcp_timeout_{t}", 0, INT_MAX, True)
      for t in _CONNTRACK_TIMEOUTS),
)}


def knob(key: str) -> Knob:
    try:
        return KNOBS[key]
    except KeyError:
        raise UsageError(f"sysctl {key!r} is not one halfopen sets; it sets: "
                         + ", ".join(sorted(KNOBS))) from None


def normalize(text: str) -> str:
    """Whitespace as sysctl(8) prints it: '32768\\t60999\\n' -> '32768 60999'."""
    return " ".join(text.split())


def check(key: str, value: object) -> str:
    """The value as text for /proc/sys; UsageError if it is not valid for `key`."""
    k = knob(key)
    text = normalize(" ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
    parts = text.split(" ")
    want = k.numbers or (2 if k.pair else 1)
    # ASCII digits: str.isdigit() is also true of '²', which int() refuses
    if len(parts) != want or not all(p.lstrip("-").isascii() and p.lstrip("-").isdigit()
                                     for p in parts):
        words = {1: "a number", 2: "two numbers"}.get(want, f"{want} numbers")
        raise UsageError(f"bad value {text!r} for {key}: {words} in {k.low}..{k.high}")
    numbers = [int(p) for p in parts]
    if not all(k.low <= n <= k.high for n in numbers) or numbers != sorted(numbers):
        raise UsageError(f"bad value {text!r} for {key}: {k.low}..{k.high}"
                         + (", low <= high" if want > 1 else ""))
    return " ".join(str(n) for n in numbers)


def path(key: str, root: str = PROC_SYS) -> str:
    return f"{root}/{key.replace('.', '/')}"


def read(key: str, space: netns.Namespace, root: str = PROC_SYS) -> str:
    with netns.entered(space), open(path(key, root)) as f:
        return normalize(f.read())


def write(key: str, value: str, space: netns.Namespace, root: str = PROC_SYS) -> None:
    """One write(2) of the whole value; the kernel's refusal is an OSError."""
    with netns.entered(space):
        fd = os.open(path(key, root), os.O_WRONLY)
        try:
            os.write(fd, value.encode() + b"\n")
        finally:
            os.close(fd)
