"""Performance data for monitoring plugins: the figures the rules judge, with their thresholds.

`halfopen doctor --nagios` prints these after the `|` of its first line, in
the plugin format `label=value[UOM];warn;crit;min;max` (Nagios Plugin
Development Guidelines, "Performance data"). Thresholds are the rules' own
constants (a rule fires at or above them); a figure whose rule has no fixed
threshold (SYN_RECV is judged against each listener's backlog) has none.
Pure: a Snapshot in, values out, so it is tested on recorded snapshots.

With `-w`/`-c` (diagnose.ranges) the operator's range replaces a figure's
warn/crit field and judge() says which figures are past theirs. With
--pid/--port/--container the socket figures and the process figures are
those of the focus (a Tally of its sockets, focus_pids()), so a focused
check's graph shows what its state judged; the namespace- and host-wide
figures stay whole, as the findings about them are kept by the focus too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Optional, Union

from halfopen.records import record

from ..model.host import UNLIMITED, HostFacts, NamespaceHost
from ..model.snapshot import Snapshot
from ..model.socket import Socket
from ..model.states import TcpState
from . import closewait, listen, resources, timewait
from .context import Options
from .ranges import Range
from .tally import NamespaceFigures, Tally

Number = Union[int, float]
Threshold = Union[int, float, str]  # a rule's number, or an operator's range as written
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
    warn: Optional[Threshold] = None
    crit: Optional[Threshold] = None
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


def _num(x: Threshold) -> str:
    """'12', '0.5', '81.5': integers plain, fractions to 3 places without trailing zeros;
    a range as written ('@10:20')."""
    if isinstance(x, str):
        return x
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
    limit = p.max or (p.warn if not isinstance(p.warn, str) else None)
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


# every label perfdata() can print, in its order (-w/-c name one of them)
LABELS = ("close_wait", "close_wait_process_max", "syn_recv", "established", "accept_queue_max",
          "time_wait", "conntrack", "file_handles", "fd_use_process_max", "orphans")


def in_focus(options: Options) -> Optional[Callable[[Socket], bool]]:
    """The sockets of the doctor's focus, as report._focus keeps findings: owned by --pid,
    on --port (local or peer: a server's port or a backend's), or owned in --container.
    None without a focus."""
    pid, port, box = options.pid, options.port, options.container
    if pid is None and port is None and box is None:
        return None

    def focused(s: Socket) -> bool:
        if port is not None and port in (s.local_port, s.peer_port):
            return True
        return any(pid is not None and o.pid == pid
                   or box is not None and o.container is not None and o.container.matches(box)
                   for o in s.owners)
    return focused


def focus_pids(snap: Snapshot, options: Options, focus: Tally) -> set[int]:
    """The processes of the focus: --pid, those in --container, and the owners of the
    focus's sockets (--port)."""
    pids = {pid for space in focus.spaces.values() for pid in space.pids.members
            if isinstance(pid, int)}
    box = options.container
    if box is not None:
        pids.update(pid for pid, p in snap.processes.items()
                    if p.container is not None and p.container.matches(box))
    if options.pid is not None:
        pids.add(options.pid)
    return pids


def perfdata(snap: Snapshot, table: Tally | None = None, focus: Tally | None = None,
             pids: set[int] | None = None) -> list[Perf]:
    """Over the checked namespaces: sockets by the states the rules watch, the worst
    process's CLOSE_WAIT, the fullest accept queue, TIME_WAIT against its buckets,
    conntrack; host-wide: file handles, the process nearest its fd limit, orphans.

    `table`: the doctor's tally of the snapshot's sockets (else one is made from them).
    `focus`: the tally of the focus's sockets (in_focus), for the socket figures;
    `pids`: the focus's processes (focus_pids), for fd_use_process_max."""
    hf = snap.host_facts
    if table is None:
        table = Tally.of(snap.sockets)
    sockets = focus if focus is not None else table
    queue_pct = _accept_queue_pct(sockets)
    spaces = list(snap.namespaces) or sorted(table.spaces)
    per_ns: list[Perf] = []
    for ns in spaces:
        nsh = hf.namespaces.get(ns) if hf is not None else None
        per_ns += _socket_perf(sockets.spaces.get(ns), queue_pct.get(ns, 0.0))
        per_ns += _namespace_perf(table.spaces.get(ns), nsh)
    out = merged(per_ns)
    if hf is None:
        return out
    return out + _host_perf(hf, spaces, pids)


def _accept_queue_pct(sockets: Tally) -> dict[str, float]:
    """Per namespace, the fullest accept queue (percent of its backlog) of the listeners
    whose backlog accept-queue-overflow judges (MIN_BACKLOG)."""
    queue_pct: dict[str, float] = {}
    for s in sockets.listeners:
        if s.send_q >= listen.MIN_BACKLOG:
            pct = 100.0 * s.recv_q / s.send_q
            queue_pct[s.netns] = max(queue_pct.get(s.netns, 0.0), pct)
    return queue_pct


def _socket_perf(space: Optional[NamespaceFigures], queue_pct: float) -> list[Perf]:
    """The figures of one namespace's sockets (the focus's, when there is one)."""
    states = space.states if space is not None else Counter()
    return [Perf("close_wait", states[CLOSE_WAIT], min=0),
            Perf("close_wait_process_max", space.cw_pids.max() if space is not None else 0, "",
                 closewait.WARN_COUNT, closewait.CRITICAL_COUNT, 0),
            Perf("syn_recv", sum(states[st] for st in SYN_RECV_STATES), min=0),
            Perf("established", states[ESTABLISHED], min=0),
            Perf("accept_queue_max", round(queue_pct, 1), "%",
                 round(100 * listen.FULL_RATIO, 1), 100, 0, 100)]


def _namespace_perf(whole: Optional[NamespaceFigures], nsh: Optional[NamespaceHost]) -> list[Perf]:
    """The namespace's own limits, focused or not: TIME_WAIT against its buckets, and
    conntrack when loaded."""
    tun = nsh.tunables if nsh is not None else None
    tw = whole.states[TIME_WAIT] if whole is not None else 0
    if nsh is not None and nsh.sockstat is not None:
        tw = max(tw, nsh.sockstat.tcp_tw)
    buckets = tun.tcp_max_tw_buckets if tun is not None else None
    out = [Perf("time_wait", tw, "", _of(timewait.TW_WARN, buckets), None, 0, buckets or None)]
    ct = nsh.conntrack if nsh is not None else None
    if ct is not None and ct.loaded and ct.count is not None and ct.max:
        out.append(Perf("conntrack", ct.count, "", _of(resources.CT_WARN, ct.max),
                        _of(resources.CT_CRITICAL, ct.max), 0, ct.max))
    return out


def _host_perf(hf: HostFacts, spaces: list[str], pids: Optional[set[int]]) -> list[Perf]:
    """Host-wide: file handles, the process (of `spaces`, of `pids`) nearest its fd
    limit, orphans."""
    out = []
    if hf.files is not None and hf.files.file_max > 0:
        fm = hf.files.file_max
        out.append(Perf("file_handles", hf.files.allocated, "", _of(resources.FD_WARN, fm),
                        _of(resources.FD_CRITICAL, fm), 0, fm))
    ratios = [100.0 * p.fd_count / p.nofile_soft for p in hf.processes.values()
              if p.nofile_soft not in (UNLIMITED, 0) and (p.netns in spaces or not spaces)
              and (pids is None or p.pid in pids)]
    if ratios or pids is not None:
        out.append(Perf("fd_use_process_max", round(max(ratios, default=0.0), 1), "%",
                        round(100 * resources.FD_WARN, 1), round(100 * resources.FD_CRITICAL, 1),
                        0, 100))
    glob = hf.global_tunables
    host = hf.namespaces.get("host")
    if glob is not None and glob.tcp_max_orphans and host is not None and host.sockstat is not None:
        mo = glob.tcp_max_orphans
        out.append(Perf("orphans", host.sockstat.tcp_orphan, "", _of(resources.ORPHAN_WARN, mo),
                        _of(resources.ORPHAN_CRITICAL, mo), 0, mo))
    return out

@record(frozen=True)
class Breach:
    """A figure past an operator's -w/-c range."""

    severity: str  # "critical" or "warning"
    text: str  # 'close_wait=120 (-c 100)'


def judge(perf: list[Perf], warn: dict[str, Range], crit: dict[str, Range]
          ) -> tuple[list[Perf], list[Breach], list[str]]:
    """The figures with the operator's ranges in their warn/crit fields, the breaches
    (critical first), and the labels given a range but not measured here (conntrack
    without nf_conntrack): those cannot be judged and are named, not alarmed on.

    >>> from halfopen.diagnose.ranges import parse_range
    >>> items, hits, missing = judge([Perf("close_wait", 120, min=0)],
    ...     {"close_wait": parse_range("50")}, {"close_wait": parse_range("100"),
    ...     "conntrack": parse_range("9")})
    >>> items[0].text(), hits, missing
    ('close_wait=120;50;100;0', [Breach(severity='critical', text='close_wait=120 (-c 100)')], \
['conntrack'])
    """
    out, hits = [], []
    for p in perf:
        w, c = warn.get(p.label), crit.get(p.label)
        if w is None and c is None:
            out.append(p)
            continue
        # an operator's range replaces both of the rule's fields: a graph's lines
        # then show the thresholds this check alarms on
        out.append(Perf(p.label, p.value, p.uom, w.text if w else None, c.text if c else None,
                        p.min, p.max))
        if c is not None and c.alerts(p.value):
            hits.append(Breach("critical", f"{p.label}={_num(p.value)}{p.uom} (-c {c.text})"))
        elif w is not None and w.alerts(p.value):
            hits.append(Breach("warning", f"{p.label}={_num(p.value)}{p.uom} (-w {w.text})"))
    hits.sort(key=lambda b: b.severity != "critical")
    seen = {p.label for p in perf}
    missing = [label for label in LABELS if label in {**warn, **crit} and label not in seen]
    return out, hits, missing
