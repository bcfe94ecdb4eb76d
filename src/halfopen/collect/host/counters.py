"""/proc/net/netstat and /proc/net/snmp: SNMP-style counters of one namespace.

Both files are pairs of lines, a header and its values, with the group name
before the colon (net/ipv4/proc.c netstat_seq_show, snmp_seq_show).
"""

from __future__ import annotations

import time

from ...model.host import CounterRates, NetCounters
from ._text import bad, read, to_int

FILES = ("netstat", "snmp")


def parse_pairs(text: str, name: str = "/proc/net/netstat") -> dict[str, int]:
    """Header/value line pairs into {"Group.Name": value}.

    >>> parse_pairs("TcpExt: SyncookiesSent ListenOverflows\\nTcpExt: 0 7\\n")
    {'TcpExt.SyncookiesSent': 0, 'TcpExt.ListenOverflows': 7}
    """
    lines = text.splitlines()
    if len(lines) % 2:
        raise bad(name, len(lines), lines[-1], "header line without a value line")
    out: dict[str, int] = {}
    for i in range(0, len(lines), 2):
        head, vals = lines[i], lines[i + 1]
        hgroup, _, hnames = head.partition(":")
        vgroup, _, hvals = vals.partition(":")
        if not hgroup or hgroup != vgroup:
            raise bad(name, i + 2, vals, f"value line does not follow header {hgroup!r}")
        names, values = hnames.split(), hvals.split()
        if len(names) != len(values):
            raise bad(name, i + 2, vals, f"{len(values)} values for {len(names)} names")
        for key, word in zip(names, values):
            out[f"{hgroup}.{key}"] = to_int(name, i + 2, vals, word)
    return out


def read_counters(proc: str = "/proc", clock=time.monotonic) -> NetCounters:
    """One sample of netstat + snmp under `proc` (pass .../thread-self inside setns)."""
    values: dict[str, int] = {}
    at = clock()
    for fname in FILES:
        path = f"{proc}/net/{fname}"
        values.update(parse_pairs(read(path), path))
    return NetCounters(at, values)


def rates(first: NetCounters, second: NetCounters) -> CounterRates:
    """Deltas and per-second rates between two samples of one namespace.

    >>> r = rates(NetCounters(1.0, {"Tcp.InSegs": 10}), NetCounters(3.0, {"Tcp.InSegs": 30}))
    >>> r.window_s, r.delta, r.per_s
    (2.0, {'Tcp.InSegs': 20}, {'Tcp.InSegs': 10.0})
    """
    window = second.sampled_at - first.sampled_at
    if window <= 0:
        raise ValueError(f"second sample is not later than the first ({window:.6f} s)")
    delta = {k: v - first.values[k] for k, v in second.values.items() if k in first.values}
    return CounterRates(window, delta, {k: d / window for k, d in delta.items()})
