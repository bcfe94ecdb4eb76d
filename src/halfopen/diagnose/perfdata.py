"""Performance data for monitoring plugins: the figures the rules judge, with their thresholds.

`halfopen doctor --nagios` prints these after the `|` of its first line, in
the plugin format `label=value[UOM];warn;crit;min;max` (Nagios Plugin
Development Guidelines, "Performance data"). Thresholds are the rules' own
constants (a rule fires at or above them); a figure whose rule has no fixed
threshold (SYN_RECV is judged against each listener's backlog) has none.
Pure: a Snapshot in, values out, so it is tested on recorded snapshots.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Optional, Union

from halfopen.records import record

from ..model.host import UNLIMITED
from ..model.snapshot import Snapshot
from ..model.states import TcpState
from . import closewait, listen, resources, timewait
from .tally import Tally

Number = Union[int, float]
CLOSE_WAIT = int(TcpState.CLOSE_WAIT)
TIME_WAIT = int(TcpState.TIME_WAIT)
ESTABLISHED = int(TcpState.ESTABLISHED)
SYN_RECV_STATES = (int(TcpState.SYN_RECV), int(TcpState.NEW_SYN_RECV))
_PLAIN_LABEL = re.compile(r"[A-Za-z0-9_.@:-]+")


@record(frozen=True)
class Perf:
    label: str
    value: Number
    uom: str = ""  # "" (a count), "%", "s", "B" ...
    warn: Optional[Number] = None
    crit: Optional[Number] = None
    min: Optional[Number] = None
    max: Optional[Number] = None

    def text(self) -> str:
        """One plugin perfdata item; empty trailing fields are dropped.

        >>> Perf("close_wait", 12, "", 10, 100, 0).text()
        'close_wait=12;10;100;0'
        >>> Perf("fd use", 81.5, "%", 80, 95, 0, 100).text()
        "'fd use'=81.5%;80;95;0;100"
        """
        label = self.label if _PLAIN_LABEL.fullmatch(self.label) else \
            "'" + self.label.replace("'", "''") + "'"
        fields = [f"{_num(self.value)}{self.uom}"] + [
            "" if x is None else _num(x) for x in (self.warn, self.crit, self.min, self.max)]
        while fields and fields[-1] == "":
            fields.pop()
        return f"{label}={';'.join(fields)}"


def _num(x: Number) -> str:
    """'12', '0.5', '81.5': integers plain, fractions to 3 places without trailing zeros."""
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    return f"{x:.3f}".rstrip("0").rstrip(".")


def _of(share: float, limit: Optional[int]) -> Optional[Number]:
    """A rule's ratio threshold in the units of its figure."""
    if not limit:
        return None
    value = share * limit
    return int(value) if float(value).is_integer() else round(value, 3)


SUMMED = ("close_wait", "syn_recv", "established")  # counts: the total over namespaces


def _fill(p: Perf) -> float:
    """How near its limit (or warning) a figure is, to pick the worst namespace's."""
    limit = p.max or p.warn
    return p.value / limit if limit else float(p.value)


def merged(items: list[Perf]) -> list[Perf]:
    """One item per label whatever the number of namespaces (--all-netns on a host whose
    pods come and go must not make a new graph per pod): counts summed, every other
    figure the namespace's nearest its limit, with that namespace's thresholds.

    >>> merged([Perf("close_wait", 2), Perf("time_wait", 5, "", 8, None, 0, 10),
    ...         Perf("close_wait", 3), Perf("time_wait", 7, "", 80, None, 0, 100)])
    [Perf(label='close_wait', value=5, uom='', warn=None, crit=None, min=None, max=None), \
Perf(label='time_wait', value=5, uom='', warn=8, crit=None, min=0, max=10)]
    """
    out: dict[str, Perf] = {}
    for p in items:
        seen = out.get(p.label)
        if seen is None:
            out[p.label] = p
        elif p.label in SUMMED:
            out[p.label] = Perf(p.label, seen.value + p.value, p.uom, p.warn, p.crit, p.min, p.max)
        elif _fill(p) > _fill(seen):
            out[p.label] = p
    return list(out.values())


def perfdata(snap: Snapshot, table: Tally | None = None) -> list[Perf]:
    """Over the checked namespaces: sockets by the states the rules watch, the worst
    process's CLOSE_WAIT, the fullest accept queue, TIME_WAIT against its buckets,
    conntrack; host-wide: file handles, the process nearest its fd limit, orphans.

    `table`: the doctor's tally of the snapshot's sockets (else one is made from them)."""
    hf = snap.host_facts
    if table is None:
        table = Tally.of(snap.sockets)
    queue_pct: dict[str, float] = {}
    for s in table.listeners:
        if s.send_q >= listen.MIN_BACKLOG:
            pct = 100.0 * s.recv_q / s.send_q
            queue_pct[s.netns] = max(queue_pct.get(s.netns, 0.0), pct)
    spaces = list(snap.namespaces) or sorted(table.spaces)
    per_ns: list[Perf] = []
    for ns in spaces:
        space = table.spaces.get(ns)
        states = space.states if space is not None else Counter()
        nsh = hf.namespaces.get(ns) if hf is not None else None
        tun = nsh.tunables if nsh is not None else None
        per_ns += [Perf("close_wait", states[CLOSE_WAIT], min=0),
                Perf("close_wait_process_max",
                     space.cw_pids.max() if space is not None else 0, "",
                     closewait.WARN_COUNT, closewait.CRITICAL_COUNT, 0),
                Perf("syn_recv", sum(states[st] for st in SYN_RECV_STATES), min=0),
                Perf("established", states[ESTABLISHED], min=0),
                Perf("accept_queue_max", round(queue_pct.get(ns, 0.0), 1), "%",
                     round(100 * listen.FULL_RATIO, 1), 100, 0, 100)]
        tw = states[TIME_WAIT]
        if nsh is not None and nsh.sockstat is not None:
            tw = max(tw, nsh.sockstat.tcp_tw)
        buckets = tun.tcp_max_tw_buckets if tun is not None else None
        per_ns.append(Perf("time_wait", tw, "", _of(timewait.TW_WARN, buckets), None, 0,
                        buckets or None))
        ct = nsh.conntrack if nsh is not None else None
        if ct is not None and ct.loaded and ct.count is not None and ct.max:
            per_ns.append(Perf("conntrack", ct.count, "", _of(resources.CT_WARN, ct.max),
                            _of(resources.CT_CRITICAL, ct.max), 0, ct.max))
    out = merged(per_ns)
    if hf is None:
        return out
    if hf.files is not None and hf.files.file_max > 0:
        fm = hf.files.file_max
        out.append(Perf("file_handles", hf.files.allocated, "", _of(resources.FD_WARN, fm),
                        _of(resources.FD_CRITICAL, fm), 0, fm))
    ratios = [100.0 * p.fd_count / p.nofile_soft for p in hf.processes.values()
              if p.nofile_soft not in (UNLIMITED, 0) and (p.netns in spaces or not spaces)]
    if ratios:
        out.append(Perf("fd_use_process_max", round(max(ratios), 1), "%",
                        round(100 * resources.FD_WARN, 1), round(100 * resources.FD_CRITICAL, 1),
                        0, 100))
    glob = hf.global_tunables
    host = hf.namespaces.get("host")
    if glob is not None and glob.tcp_max_orphans and host is not None and host.sockstat is not None:
        mo = glob.tcp_max_orphans
        out.append(Perf("orphans", host.sockstat.tcp_orphan, "", _of(resources.ORPHAN_WARN, mo),
                        _of(resources.ORPHAN_CRITICAL, mo), 0, mo))
    return out
