"""The Prometheus collector: a fresh snapshot and fresh metric families per scrape.

Metric names and labels are listed in docs/metrics.md. Per-process series
are capped: the `top` processes (most CLOSE_WAIT, then most sockets) keep
their pid and comm labels; the rest are summed into pid="other",
comm="other" so a host with 5,000 processes does not flood Prometheus.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .sample import ProcSample, Sample
from .sampler import Sampler

OTHER = "other"
FINDING_LABELS = ("id", "severity", "cause", "pid", "comm", "netns", "port")


def counter_metric_name(key: str) -> str:
    """'TcpExt.ListenOverflows' -> 'halfopen_tcpext_listen_overflows' (+ _total on exposition).

    >>> counter_metric_name("TcpExt.TCPTimeWaitOverflow"), counter_metric_name("Tcp.RetransSegs")
    ('halfopen_tcpext_tcp_time_wait_overflow', 'halfopen_tcp_retrans_segs')
    """
    group, _, name = key.partition(".")
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    return f"halfopen_{group.lower()}_{snake}"


def cap_processes(procs: dict[int, ProcSample], top: int) -> tuple[list[ProcSample], ProcSample | None]:
    """The `top` processes by (CLOSE_WAIT, sockets), and the rest summed as 'other'."""
    ranked = sorted(procs.values(), key=lambda p: (p.close_wait, p.total, -p.pid), reverse=True)
    kept, rest = ranked[:top], ranked[top:]
    if not rest:
        return kept, None
    other = ProcSample(0, OTHER)
    for p in rest:
        for st, n in p.states.items():
            other.states[st] = other.states.get(st, 0) + n
        if p.oldest_close_wait_s is not None:
            other.oldest_close_wait_s = max(other.oldest_close_wait_s or 0.0, p.oldest_close_wait_s)
    return kept, other


def families(s: Sample, top: int) -> Iterator[Metric]:
    """Every metric family of one sample (pure: tests feed recorded samples)."""
    g = GaugeMetricFamily("halfopen_sockets", "TCP sockets by state and network namespace.",
                          labels=["netns", "state"])
    for (ns, st), n in sorted(s.states.items()):
        g.add_metric([ns, st], n)
    yield g

    kept, other = cap_processes(s.processes, top)
    ps = GaugeMetricFamily("halfopen_process_sockets",
                           f"TCP sockets held by a process, by state (top {top} processes; "
                           "the rest summed as pid=\"other\").", labels=["pid", "comm", "state"])
    age = GaugeMetricFamily("halfopen_process_oldest_close_wait_seconds",
                            "Age of the process's oldest CLOSE_WAIT socket: a lower bound from "
                            "tcp_info last_ack_recv, kept monotonic per socket across scrapes.",
                            labels=["pid", "comm"])
    fds = GaugeMetricFamily("halfopen_process_open_fds", "Open file descriptors of a process.",
                            labels=["pid", "comm"])
    lim = GaugeMetricFamily("halfopen_process_max_fds",
                            "Soft RLIMIT_NOFILE of a process (from /proc/PID/limits).",
                            labels=["pid", "comm"])
    for p in kept + ([other] if other else []):
        pid = OTHER if p is other else str(p.pid)
        for st, n in sorted(p.states.items()):
            ps.add_metric([pid, p.comm, st], n)
        if p.oldest_close_wait_s is not None:
            age.add_metric([pid, p.comm], round(p.oldest_close_wait_s, 3))
        if p is not other:
            if p.fds is not None:
                fds.add_metric([pid, p.comm], p.fds)
            if p.fd_limit is not None:
                lim.add_metric([pid, p.comm], p.fd_limit)
    yield ps
    yield age
    yield fds
    yield lim
    yield GaugeMetricFamily("halfopen_processes_capped",
                            "Processes holding TCP sockets folded into pid=\"other\".",
                            value=max(0, len(s.processes) - len(kept)))

    labels = ["netns", "address", "port", "comm"]
    aq = GaugeMetricFamily("halfopen_listener_accept_queue",
                           "Connections waiting in a listener's accept queue (Recv-Q).", labels=labels)
    aql = GaugeMetricFamily("halfopen_listener_accept_queue_limit",
                            "A listener's accept queue limit (backlog, Send-Q).", labels=labels)
    syn = GaugeMetricFamily("halfopen_listener_syn_recv",
                            "SYN_RECV request sockets to a listener's port.", labels=labels)
    for li in s.listeners:
        lv = [li.netns, li.addr, str(li.port), li.comm]
        aq.add_metric(lv, li.accept_queue)
        aql.add_metric(lv, li.backlog)
        syn.add_metric(lv, li.syn_recv)
    yield aq
    yield aql
    yield syn

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

    up = GaugeMetricFamily("halfopen_doctor_up",
                           "1 if the doctor ran on this scrape, 0 if it is unavailable.",
                           value=int(s.findings is not None))
    yield up
    fam = GaugeMetricFamily("halfopen_finding", "One series per active finding of the doctor "
                            "(value 1); labels name the rule and its subject.",
                            labels=list(FINDING_LABELS))
    seen = set()
    for x in s.findings or ():
        subj = x.subject
        values = (x.id, x.severity, x.cause, str(subj.get("pid", "")), str(subj.get("comm", "")),
              str(subj.get("netns", "")), str(subj.get("port", "")))
        if values not in seen:
            seen.add(values)
            fam.add_metric(list(values), 1)
    yield fam


class HalfopenCollector:
    """prometheus_client custom collector; one scrape at a time."""

    def __init__(self, sampler: Sampler, top: int = 20) -> None:
        self.sampler = sampler
        self.top = top
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # do not take a snapshot at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            start = time.perf_counter()
            sample = self.sampler.take()
            out = list(families(sample, self.top))
            out.append(GaugeMetricFamily("halfopen_scrape_duration_seconds",
                                         "Seconds this scrape took to read the kernel.",
                                         value=time.perf_counter() - start))
        yield from out
