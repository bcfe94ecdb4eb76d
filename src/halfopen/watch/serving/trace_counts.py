"""`exporter --trace`: a tracer kept running beside the exporter, counting connection
ends per process identity (docs/metrics.md, "Trace counters").

A thread reads the trace (collect.trace_read, joined to owners by
collect.trace_join as `halfopen trace` does) and counts, per identity
(process_labels.py: comm, systemd unit, container, pod):

- state changes that matter: from established (to close_wait: the peer's FIN;
  to fin_wait1: this side's; to close: a reset or an abort) and from close_wait
  (to last_ack: the owner's close() or shutdown(); to close), as
  `halfopen_trace_state_changes_total{from, to}`, the kernel's state names in
  lower case as `halfopen_sockets` has them;
- resets by direction (`sent`, `received`) and the kernel's reason in lower case
  ("" where it gives none: every received reset, and sent ones before 6.10);
- the reader's own: events lost (the instance's per-CPU stats) and read.

Counters never go down, so an identity keeps its series for the exporter's life:
the first `budget` identities seen keep their labels, later ones count under
comm="other" (the exporter's `--top`, as for the gauges). Events whose socket has
no owner (a reset answering a port nothing listens on, a connection born and gone
between two owner lookups) count under an identity with every label empty.
close() events are not read (no process is followed): the close-wait -> last_ack
change already says the owner closed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ...collect.trace_join import Flow, Joiner, OwnerLookup
from ...collect.trace_read import TraceOptions, TraceReader
from ...collect.unit import read_unit
from ...model.states import state_name
from ...model.trace import STATE_WORD, TraceEvent
from .. import process_labels
from ..process_labels import LABELS as IDENTITY_LABELS
from ..process_labels import OTHER_IDENTITY, Identity

TICK_S = 0.2  # as `halfopen trace`: how often quiet pipes are read
BUSY_EVENTS = 500  # a read that brought this many: read again at once
NO_OWNER = Identity("")
_KERNEL_NAME = {word: state_name(int(state)) for state, word in STATE_WORD.items()}
_UNITS_KEPT = 65536  # (pid, comm) -> unit entries before the cache is emptied


class TraceCounts:
    """The tracer thread and its counters; a prometheus_client collector."""

    def __init__(self, budget: int, reader: TraceReader | None, note: str = "",
                 proc: str = "/proc") -> None:
        self.budget = budget
        self.reader = reader
        self.note = note
        self.proc = proc
        self.states: dict[tuple[Identity, str, str], int] = {}
        self.resets: dict[tuple[Identity, str, str], int] = {}
        self.error: str = ""
        self._named: set[Identity] = set()  # identities with labels of their own
        self._units: dict[tuple[int, str], str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, budget: int, proc: str = "/proc") -> TraceCounts:
        """Open the trace and start counting; without tracefs or permission, a
        TraceCounts whose `note` says why (it exports halfopen_trace_up 0)."""
        try:
            reader = TraceReader.open(TraceOptions())
        except OSError as exc:
            why = "tracefs needs root" if isinstance(exc, PermissionError) else (exc.filename or "")
            return cls(budget, None, f"--trace: not traced: {exc.strerror or exc}" + (f" ({why})" if why else ""),
                       proc)
        counts = cls(budget, reader, proc=proc)
        if not reader.enabled:
            counts.note = "--trace: not traced: this kernel has none of the tracepoints"
            reader.close()
            counts.reader = None
            return counts
        try:
            joiner = Joiner(reader.epoch, OwnerLookup(proc=proc), reader.saved_tgids)
            joiner.learn()
        except BaseException:
            reader.close()
            raise
        counts._thread = threading.Thread(target=counts._run, args=(joiner,), name="halfopen-trace",
                                          daemon=True)
        counts._thread.start()
        return counts

    def _run(self, joiner: Joiner) -> None:
        assert self.reader is not None
        try:
            while not self._stop.is_set():
                raw = self.reader.poll()
                joiner.feed(raw)
                ready = joiner.ready()
                joiner.earlier.clear()  # CLOSE_WAIT sockets found by lookups: not counted here
                if ready:
                    with self._lock:
                        for ev, flow in ready:
                            self._count(ev, flow)
                if len(raw) < BUSY_EVENTS:
                    self._stop.wait(TICK_S)
        except Exception as exc:  # noqa: BLE001 - exported as halfopen_trace_up 0, said on stderr
            self.error = f"--trace: stopped: {exc}"

    def _identity(self, ev: TraceEvent, flow: Flow | None) -> Identity:
        if ev.pid is None:
            return NO_OWNER
        comm = ev.comm or ""
        key = (ev.pid, comm)
        unit = self._units.get(key)
        if unit is None:
            if len(self._units) >= _UNITS_KEPT:
                self._units.clear()
            unit = self._units[key] = read_unit(ev.pid, self.proc)
        owner = flow.owner if flow is not None else None
        ident = process_labels.of(comm, unit, owner.container if owner is not None else None)
        if ident in self._named or ident == OTHER_IDENTITY:
            return ident
        if len(self._named) < self.budget:
            self._named.add(ident)
            return ident
        return OTHER_IDENTITY

    def _count(self, ev: TraceEvent, flow: Flow | None) -> None:
        if ev.event == "state":
            old, new = _KERNEL_NAME.get(ev.from_state or ""), _KERNEL_NAME.get(ev.to_state or "")
            if old is None or new is None:
                return
            key = (self._identity(ev, flow), old, new)
            self.states[key] = self.states.get(key, 0) + 1
        elif ev.event in ("reset-sent", "reset-received"):
            key = (self._identity(ev, flow), ev.event[6:], ev.reason or "")
            self.resets[key] = self.resets.get(key, 0) + 1

    # -- the collector ----------------------------------------------------------------

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = list(IDENTITY_LABELS)
        up = self.reader is not None and not self.error
        yield GaugeMetricFamily("halfopen_trace_up",
                                "1 while exporter --trace reads the kernel's connection-end "
                                "events, 0 if it could not start or stopped (stderr says why).",
                                value=int(up))
        states = CounterMetricFamily("halfopen_trace_state_changes",
                                     "TCP state changes that matter for half-open diagnosis, seen "
                                     "by the trace, by owner identity: from established (to "
                                     "close_wait: the peer's FIN) and from close_wait.",
                                     labels=[*labels, "from", "to"])
        resets = CounterMetricFamily("halfopen_trace_resets",
                                     "TCP resets seen by the trace, by owner identity, direction "
                                     "(sent, received) and the kernel's reason (\"\": none given).",
                                     labels=[*labels, "direction", "reason"])
        with self._lock:
            state_rows = sorted(self.states.items(), key=lambda kv: (kv[0][0].labels(), kv[0][1:]))
            reset_rows = sorted(self.resets.items(), key=lambda kv: (kv[0][0].labels(), kv[0][1:]))
        for (ident, old, new), n in state_rows:
            states.add_metric([*ident.labels(), old, new], n)
        for (ident, direction, reason), n in reset_rows:
            resets.add_metric([*ident.labels(), direction, reason], n)
        yield states
        yield resets
        if self.reader is not None:
            try:
                lost = self.reader.lost()
            except OSError:
                return
            yield CounterMetricFamily("halfopen_trace_lost_events",
                                      "Events the trace's ring buffers overwrote or dropped "
                                      "(per-CPU stats: overrun + commit overrun + dropped): "
                                      "the trace counters are lower bounds when it grows.",
                                      value=lost)
            yield CounterMetricFamily("halfopen_trace_events",
                                      "Events the trace read from the kernel, before joining.",
                                      value=self.reader.events_read)

    def stop(self) -> None:
        """End the thread and remove the instances (also when it never started)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.reader is not None:
            reader, self.reader = self.reader, None
            reader.close()
