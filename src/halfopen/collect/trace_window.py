"""A trace window for the doctor (`doctor --trace SECONDS`): the connection-end events
read in a thread while the doctor samples its counters, folded per owner into one
model.trace.TraceFacts that the rules read as data (like nginx's configuration).

    window = TraceWindow.start(seconds)   # the instance is made, reading begins
    ... take_live(...) ...                # in parallel
    facts = window.finish()               # waits out the rest, removes the instance

Without tracefs, without permission, or on a kernel without the tracepoints,
`start` still returns a window whose facts say why in one note (and nothing else
changes). The fold (`Fold`):

- fins_received / closes_called: sockets whose peer's FIN (established ->
  close-wait) came in the window, and of those, the ones the owner closed or shut
  down (a close() on it, close-wait -> last-ack, or -> closed without a reset
  received and without the kernel giving up): the article's strace check;
- close_wait_ages_s: exact, from the FIN to leaving CLOSE_WAIT, or to the
  window's end for those still in it;
- earlier_close_wait / earlier_closed: CLOSE_WAIT sockets the first lookup found
  (their FIN before the window) and how many of those the owner closed;
- give-ups: -> closed after a keepalive reset (reason tcp_keepalive_timeout) or
  after retransmissions with no reset either way, per peer;
- resets received, with the state and the idle time before them (tcp_info's last
  data at the lookup before the reset).
"""

from __future__ import annotations

import threading
import time

from ..model.states import TcpState
from ..model.trace import ResetSeen, TraceEvent, TraceFacts, TraceOwnerFacts
from .trace_join import Flow, Joiner, OwnerLookup
from .trace_read import TraceOptions, TraceReader

TICK_S = 0.2  # as `halfopen trace`: how often quiet pipes are read
BUSY_EVENTS = 500  # a read that brought this many: read again at once
# a window is short and bounded: its lookups may take half of it (a connection that
# lives a second is still named on a loaded host)
LOOKUP_SHARE = 0.5
MAX_RESETS = 1000  # resets received kept per owner (the rest only counted)
_CLOSE_WAIT = int(TcpState.CLOSE_WAIT)


class Fold:
    """(event, flow) pairs in, TraceFacts out."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int | None, str | None], TraceOwnerFacts] = {}
        self.fins: dict[int, Flow] = {}  # id -> flow whose FIN came in the window
        self.fin_owner: dict[int, tuple[int | None, str | None]] = {}
        self.left: dict[int, float] = {}  # id -> exact seconds in CLOSE_WAIT, once it left

    def _row(self, pid: int | None, comm: str | None, netns: str | None) -> TraceOwnerFacts:
        row = self.rows.get((pid, comm))
        if row is None:
            row = self.rows[(pid, comm)] = TraceOwnerFacts(pid, comm, netns)
        if row.netns is None:
            row.netns = netns
        return row

    def add(self, ev: TraceEvent, flow: Flow | None) -> None:
        row = self._row(ev.pid, ev.comm, ev.netns)
        if ev.event == "state":
            if ev.to_state == "close-wait" and flow is not None:
                self.fins[id(flow)] = flow
                self.fin_owner[id(flow)] = (ev.pid, ev.comm)
            elif ev.from_state == "close-wait" and ev.close_wait_s is not None and flow is not None:
                self.left[id(flow)] = ev.close_wait_s
            if ev.gave_up is not None and flow is not None:
                if ev.gave_up == "keepalive":
                    row.keepalive_giveups += 1
                else:
                    row.retransmit_giveups += 1
                row.giveup_peers[flow.dst] = row.giveup_peers.get(flow.dst, 0) + 1
        elif ev.event == "reset-sent":
            key = ev.reason or "-"
            row.resets_sent[key] = row.resets_sent.get(key, 0) + 1
        elif ev.event == "reset-received" and ev.src and ev.dst:
            if len(row.resets_received) < MAX_RESETS:
                row.resets_received.append(ResetSeen(ev.time, ev.src, ev.dst, ev.state, ev.idle_s))
        elif ev.event == "retransmit-timeout":
            row.retransmits += 1

    def facts(self, joiner: Joiner, window_s: float, lost: int, notes: list[str],
              end_ns: int | None) -> TraceFacts:
        """The rows, with the FIN'd and the earlier CLOSE_WAIT sockets counted as they
        stand at the window's end (`end_ns`, the trace clock; None: not comparable)."""
        for key, flow in self.fins.items():
            pid, comm = self.fin_owner[key]
            if pid is None and flow.owner is not None:  # named by a later lookup or close()
                pid, comm = flow.owner.pid, flow.owner.comm
            row = self._row(pid, comm, flow.netns)
            row.fins_received += 1
            if flow.closed:
                row.closes_called += 1
            if key in self.left:
                row.close_wait_ages_s.append(round(self.left[key], 3))
            elif flow.state == _CLOSE_WAIT:
                row.still_in_close_wait += 1
                if end_ns is not None and flow.since:
                    row.close_wait_ages_s.append(round(max(0, end_ns - flow.since) / 1e9, 3))
        for flow in joiner.earlier:
            if flow.fin or flow.owner is None:
                continue
            row = self._row(flow.owner.pid, flow.owner.comm, flow.netns)
            row.earlier_close_wait += 1
            if flow.closed:
                row.earlier_closed += 1
        return TraceFacts(window_s, lost, list(self.rows.values()), notes)


class TraceWindow:
    """A tracer reading in a thread for `seconds` (see the module docstring)."""

    def __init__(self, seconds: float, reader: TraceReader | None, note: str = "") -> None:
        self.seconds = seconds
        self.reader = reader
        self.note = note
        self.started = time.monotonic()
        self.fold = Fold()
        self.joiner: Joiner | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def start(cls, seconds: float, port: int | None = None, pid: int | None = None) -> TraceWindow:
        """`port`: connections with it at either end (a kernel filter); `pid`: close()
        only from that process (its threads, and those it makes later); without it,
        close() only from the owners of the sockets followed (so never the doctor's
        own /proc scans)."""
        try:
            reader = TraceReader.open(TraceOptions(port=port, pids=(pid,) if pid is not None else ()))
        except PermissionError as exc:
            return cls(seconds, None, f"--trace: not traced: {exc.strerror or exc} (tracefs needs root)")
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            return cls(seconds, None, f"--trace: not traced: {exc.strerror or exc}{where}")
        window = cls(seconds, reader)
        if not reader.enabled:
            return window  # finish() says so
        try:
            window.joiner = Joiner(reader.epoch, OwnerLookup(port=port, activity=True, share=LOOKUP_SHARE),
                                   reader.saved_tgids, reader.follow)
            window.joiner.learn()
        except BaseException:
            reader.close()
            raise
        window._thread = threading.Thread(target=window._run, name="halfopen-trace", daemon=True)
        window._thread.start()
        return window

    def _run(self) -> None:
        assert self.reader is not None and self.joiner is not None
        try:
            while not self._stop.is_set():
                raw = self.reader.poll()
                self.joiner.feed(raw)
                for ev, flow in self.joiner.ready():
                    self.fold.add(ev, flow)
                if len(raw) < BUSY_EVENTS:
                    self._stop.wait(TICK_S)
        except Exception as exc:  # noqa: BLE001 - reported by finish(), in the main thread
            self.error = exc

    def stop(self) -> None:
        """End the reading thread and remove the instance (also on the way out of an error)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.reader is not None:
            self.reader.close()

    def finish(self) -> TraceFacts:
        """Wait until `seconds` have passed since start, read the rest, and fold."""
        if self.reader is None:
            return TraceFacts(0.0, note=self.note)
        reader = self.reader
        try:
            if not reader.enabled:
                return TraceFacts(0.0, notes=list(reader.notes),
                                  note="--trace: not traced: this kernel has none of the tracepoints")
            left = self.started + self.seconds - time.monotonic()
            if left > 0:
                self._stop.wait(left)
            self._stop.set()
            assert self._thread is not None and self.joiner is not None
            self._thread.join()
            self._thread = None
            if self.error is not None:
                raise self.error
            self.joiner.feed(reader.poll())
            for ev, flow in self.joiner.ready(force=True):
                self.fold.add(ev, flow)
            # the instance's clock is CLOCK_MONOTONIC ('mono'), as time.monotonic_ns()
            end_ns = time.monotonic_ns() if reader.clock_ok else None
            lost = reader.lost()
            notes = list(reader.notes)
            if reader.missed_pages:
                notes.append(f"{reader.missed_pages} buffer pages said events were lost before them")
            if lost:
                notes.append(f"--trace: {lost} events lost: the counts are lower bounds")
            return self.fold.facts(self.joiner, time.monotonic() - self.started, lost, notes, end_ns)
        finally:
            self.stop()
