"""The Prometheus collector: a fresh snapshot and fresh metric families per scrape.

Metric names and labels are listed in docs/metrics.md. Series are keyed by
what survives a restart (process_labels.py): per-process series by comm, systemd
unit and container/pod, with the pids in `halfopen_process_info`; findings by
rule id and subject, with the severity as the value, so a finding that
escalates from warning to critical stays one series (one alert).

Per-process series are capped: the `top` identities (most CLOSE_WAIT, then
most sockets) keep their labels; the rest are summed into comm="other" so a
host with 5,000 processes does not flood Prometheus.
"""

from __future__ import annotations

import platform
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ... import __version__
from ...model.finding import SEVERITY_RANK
from ..process_labels import LABELS as IDENTITY_LABELS
from ..process_labels import OTHER_IDENTITY, Identity
from ..sample import ProcSample, Sample
from ..sampler import Sampler

FINDING_LABELS = ("id", "cause", *IDENTITY_LABELS, "netns", "port")
# The value of halfopen_finding: the severity, so escalation changes a value, not a series.
SEVERITY_VALUE = {k: SEVERITY_RANK[k] for k in ("info", "warning", "critical")}
INFO_PIDS = 5  # pids per identity in halfopen_process_info (most sockets first)


def counter_metric_name(key: str) -> str:
    """'TcpExt.ListenOverflows' -> 'halfopen_tcpext_listen_overflows' (+ _total on exposition).

    >>> counter_metric_name("TcpExt.TCPTimeWaitOverflow"), counter_metric_name("Tcp.RetransSegs")
    ('halfopen_tcpext_tcp_time_wait_overflow', 'halfopen_tcp_retrans_segs')
    """
    group, _, name = key.partition(".")
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return f"halfopen_{group.lower()}_{snake}"


def identity_of(s: Sample, pid: Optional[int], comm: str = "") -> Identity:
    if pid is None:
        return Identity(comm)
    found = s.identities.get(pid)
    if found is not None:
        return found
    p = s.processes.get(pid)
    return Identity(p.comm if p is not None else comm)


def group_processes(s: Sample) -> dict[Identity, list[ProcSample]]:
    """Processes by identity, each group's processes with the most sockets first."""
    groups: dict[Identity, list[ProcSample]] = {}
    for p in s.processes.values():
        groups.setdefault(identity_of(s, p.pid, p.comm), []).append(p)
    for procs in groups.values():
        procs.sort(key=lambda p: (-p.close_wait, -p.total, p.pid))
    return groups


def _close_wait(procs: list[ProcSample]) -> tuple[int, int]:
    return sum(p.close_wait for p in procs), sum(p.total for p in procs)


def cap_processes(s: Sample, top: int
                  ) -> tuple[list[tuple[Identity, list[ProcSample]]], list[ProcSample]]:
    """The `top` identities by (CLOSE_WAIT, sockets), and the processes of the rest.
    A process whose comm is "other" and has no unit cannot be told from the rest by
    its labels: it is folded with them (two series with one label set would break
    the scrape)."""
    groups = group_processes(s)
    rest = groups.pop(OTHER_IDENTITY, [])
    ranked = sorted(groups.items(),
                    key=lambda kv: (*(-x for x in _close_wait(kv[1])), kv[0].labels()))
    rest += [p for _ident, procs in ranked[top:] for p in procs]
    return ranked[:top], rest


def _summed(procs: list[ProcSample]) -> tuple[dict[str, int], Optional[float]]:
    states: dict[str, int] = {}
    oldest: Optional[float] = None
    for p in procs:
        for st, n in p.states.items():
            states[st] = states.get(st, 0) + n
        if p.oldest_close_wait_s is not None:
            oldest = max(oldest or 0.0, p.oldest_close_wait_s)
    return states, oldest


def _nearest_limit(procs: list[ProcSample]) -> Optional[ProcSample]:
    """Of processes sharing an identity, the one nearest its fd limit (most fds if none has one)."""
    with_fds = [p for p in procs if p.fds is not None]
    if not with_fds:
        return None
    return max(with_fds, key=lambda p: ((p.fds or 0) / p.fd_limit if p.fd_limit else 0.0, p.fds or 0))


def process_families(s: Sample, top: int) -> Iterator[Metric]:
    labels = list(IDENTITY_LABELS)
    kept, rest = cap_processes(s, top)
    ps = GaugeMetricFamily("halfopen_process_sockets",
                           f"TCP sockets held by the processes of one identity, by state (top {top}"
                           " identities; the rest summed as comm=\"other\").",
                           labels=[*labels, "state"])
    age = GaugeMetricFamily("halfopen_process_oldest_close_wait_seconds",
                            "Age of the identity's oldest CLOSE_WAIT socket: a lower bound from "
                            "tcp_info last_ack_recv, kept monotonic per socket across scrapes.",
                            labels=labels)
    fds = GaugeMetricFamily("halfopen_process_open_fds",
                            "Open file descriptors of the identity's process nearest its limit.",
                            labels=labels)
    lim = GaugeMetricFamily("halfopen_process_max_fds",
                            "Soft RLIMIT_NOFILE of that same process (from /proc/PID/limits).",
                            labels=labels)
    count = GaugeMetricFamily("halfopen_process_pids",
                              "Processes holding TCP sockets that share this identity.",
                              labels=labels)
    info = GaugeMetricFamily("halfopen_process_info",
                             f"1 per pid of an identity (up to {INFO_PIDS}, most sockets first): "
                             "join on the identity labels to find the pid.",
                             labels=[*labels, "pid"])
    groups = [(ident, procs) for ident, procs in kept]
    if rest:
        groups.append((OTHER_IDENTITY, rest))
    for ident, procs in groups:
        lv = ident.labels()
        states, oldest = _summed(procs)
        for st, n in sorted(states.items()):
            ps.add_metric([*lv, st], n)
        if oldest is not None:
            age.add_metric(lv, round(oldest, 3))
        if ident == OTHER_IDENTITY:
            continue  # no fd pair and no pids for the folded processes
        count.add_metric(lv, len(procs))
        nearest = _nearest_limit(procs)
        if nearest is not None and nearest.fds is not None:
            fds.add_metric(lv, nearest.fds)
            if nearest.fd_limit is not None:
                lim.add_metric(lv, nearest.fd_limit)
        for p in procs[:INFO_PIDS]:
            info.add_metric([*lv, str(p.pid)], 1)
    yield from (ps, age, fds, lim, count, info)
    yield GaugeMetricFamily("halfopen_processes_capped",
                            "Processes holding TCP sockets folded into comm=\"other\".",
                            value=len(rest))


def listener_families(s: Sample) -> Iterator[Metric]:
    labels = ["netns", "address", "port", *IDENTITY_LABELS]
    aq = GaugeMetricFamily("halfopen_listener_accept_queue",
                           "Connections waiting in a listener's accept queue (Recv-Q).", labels=labels)
    aql = GaugeMetricFamily("halfopen_listener_accept_queue_limit",
                            "A listener's accept queue limit (backlog, Send-Q).", labels=labels)
    syn = GaugeMetricFamily("halfopen_listener_syn_recv",
                            "SYN_RECV request sockets to a listener's port.", labels=labels)
    # SO_REUSEPORT: several listeners of one identity on one address and port share a series
    summed: dict[tuple[str, ...], list[int]] = {}
    for li in s.listeners:
        key = (li.netns, li.addr, str(li.port), *identity_of(s, li.pid, li.comm).labels())
        acc = summed.setdefault(key, [0, 0, 0])
        acc[0] += li.accept_queue
        acc[1] += li.backlog
        acc[2] += li.syn_recv
    for key, (queue, backlog, syn_recv) in sorted(summed.items()):
        aq.add_metric(list(key), queue)
        aql.add_metric(list(key), backlog)
        syn.add_metric(list(key), syn_recv)
    yield from (aq, aql, syn)


def finding_families(s: Sample) -> Iterator[Metric]:
    yield GaugeMetricFamily("halfopen_doctor_up",
                            "1 if the scrape carries the doctor's findings (it runs at most "
                            "every 30 s), 0 if it is unavailable.",
                            value=int(s.findings is not None))
    fam = GaugeMetricFamily("halfopen_finding",
                            "One series per active doctor finding, keyed by rule id and subject; "
                            "the value is its severity: 0 info, 1 warning, 2 critical.",
                            labels=list(FINDING_LABELS))
    unknown = GaugeMetricFamily("halfopen_rule_unknown",
                                "1 while a rule could not check (its source is unavailable).",
                                labels=["id"])
    worst: dict[tuple[str, ...], int] = {}
    unknown_ids: set[str] = set()
    for x in s.findings or ():
        if x.severity not in SEVERITY_VALUE:
            unknown_ids.add(x.id)
            continue
        subj = x.subject
        ident = identity_of(s, subj.pid, subj.comm or "")
        key = (x.id, x.cause, *ident.labels(), subj.netns or "",
               "" if subj.port is None else str(subj.port))
        # one series per subject: the worst of the findings that share it (two workers)
        worst[key] = max(worst.get(key, 0), SEVERITY_VALUE[x.severity])
    for key, value in sorted(worst.items()):
        fam.add_metric(list(key), value)
    for rid in sorted(unknown_ids):
        unknown.add_metric([rid], 1)
    yield fam
    yield unknown


def collector_families(s: Sample) -> Iterator[Metric]:
    ok = GaugeMetricFamily("halfopen_collector_success",
                           "1 if the collector read what it reads on this scrape (host sources: "
                           "as of the host run's last run), 0 if it failed or fell back.",
                           labels=["collector"])
    took = GaugeMetricFamily("halfopen_collector_duration_seconds",
                             "Seconds the collector took (the host run: its last run).",
                             labels=["collector"])
    for name, run in sorted(s.collectors.items()):
        ok.add_metric([name], int(run.success))
        if run.duration_s is not None:
            took.add_metric([name], round(run.duration_s, 6))
    yield ok
    yield took


def host_families(s: Sample) -> Iterator[Metric]:
    g = GaugeMetricFamily("halfopen_sockets", "TCP sockets by state and network namespace.",
                          labels=["netns", "state"])
    for (ns, st), n in sorted(s.states.items()):
        g.add_metric([ns, st], n)
    yield g
    f = s.facts
    for name, doc, value in (
            ("halfopen_conntrack_entries", "Connections tracked by nf_conntrack.", f.conntrack_count),
            ("halfopen_conntrack_entries_limit", "nf_conntrack_max.", f.conntrack_max),
            ("halfopen_file_handles", "Allocated file handles, host-wide (fs.file-nr).", f.file_nr),
            ("halfopen_file_handles_limit", "fs.file-max.", f.file_max)):
        if value is not None:
            yield GaugeMetricFamily(name, doc, value=value)
    for key, value in sorted(f.counters.items()):
        yield CounterMetricFamily(counter_metric_name(key),
                                  f"{key} from /proc/net/netstat or /proc/net/snmp.", value=value)


def build_info() -> Metric:
    g = GaugeMetricFamily("halfopen_build_info", "halfopen's version and Python (value 1).",
                          labels=["version", "python_version"])
    g.add_metric([__version__, platform.python_version()], 1)
    return g


def families(s: Sample, top: int) -> Iterator[Metric]:
    """Every metric family of one sample (pure: tests feed recorded samples)."""
    yield from host_families(s)
    yield from process_families(s, top)
    yield from listener_families(s)
    yield from finding_families(s)
    yield from collector_families(s)
    yield build_info()


class HalfopenCollector:
    """prometheus_client custom collector; one scrape at a time, every sample taken
    on the same thread.

    The server's workers take turns at scrapes, and glibc gives each thread a
    malloc arena of its own: a sample's dicts and lists, freed in one worker's
    arena, were not reused by the next scrape in another's, and the exporter
    grew by about 20 MiB a scrape at 400k sockets (bench/scale.py). Sampling on
    one thread keeps them in one arena.
    """

    def __init__(self, sampler: Sampler, top: int = 20) -> None:
        self.sampler = sampler
        self.top = top
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="halfopen-sample")
        self._thread.submit(int)  # started now: the exporter's threads are fixed from the start

    def describe(self) -> list[Metric]:
        return []  # do not take a snapshot at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            out = self._thread.submit(self._collect).result()
        yield from out

    def _collect(self) -> list[Metric]:
        start = time.perf_counter()
        sample = self.sampler.take()
        out = list(families(sample, self.top))
        out.append(GaugeMetricFamily("halfopen_scrape_duration_seconds",
                                     "Seconds this scrape took to read the kernel.",
                                     value=time.perf_counter() - start))
        return out


def registry(sampler: Sampler, top: int = 20) -> CollectorRegistry:
    """What `halfopen exporter` serves: our families and the standard process_* metrics."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(HalfopenCollector(sampler, top))
    ProcessCollector(registry=reg)  # process_cpu_seconds_total, process_open_fds ...: the usual names
    return reg
