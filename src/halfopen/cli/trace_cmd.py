"""`halfopen trace`: the kernel's own record of how connections end, from tracefs."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

import click

from ..collect import trace_filter
from ..collect.trace_join import Flow, Joiner, OwnerLookup
from ..collect.trace_read import TraceOptions, TraceReader
from ..errors import HalfopenError, NotPermitted, UsageError
from ..model.trace import TraceEvent
from . import trace_out
from .options import filter_argument

TICK_S = 0.2  # how often the per-CPU pipes are read when they are quiet
BUSY_EVENTS = 500  # a read that brought this many: read again without sleeping


class _Stop(Exception):
    """SIGTERM: stop as Ctrl-C does (the instance is removed on the way out)."""


def _on_term(_sig: int, _frame: FrameType | None) -> None:
    raise _Stop


def _port_of(endpoint: str | None) -> int | None:
    return int(endpoint.rsplit(":", 1)[1]) if endpoint else None


@click.command()
@filter_argument
@click.option("--port", type=click.IntRange(1, 65535), help="Only connections with this port at either end (filtered in the kernel).")
@click.option("--pid", type=click.IntRange(1), help="Only sockets this process owns; its close() calls filtered in the kernel.")
@click.option("--container", help="Only sockets owned by processes of this container (name or id prefix).")
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop after S seconds (default: Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document at the end.")
@click.option("--jsonl", is_flag=True, help="One JSON object per event, streamed.")
@click.option("--summary", is_flag=True, help="Fold events per owner, peer and reason.")
def trace(filter_words: tuple[str, ...], port: int | None, pid: int | None, container: str | None, duration: float | None,
          as_json: bool, jsonl: bool, summary: bool) -> int:
    """Show how connections end: peers' FINs, resets and their reasons,
    retransmissions, and the owners' close() calls, from the kernel's
    tracepoints (a private tracefs instance; no compiler, no ptrace).

    \b
    Events: state (established -> close-wait is the peer's FIN, -> fin-wait-1
    this side's; leaving close-wait), reset-sent, reset-received (with the
    kernel's reason), retransmit-timeout, close (the owner's close() on a
    socket followed). Lost events are always reported (docs/trace.md).
    \b
    FILTER: ss's words, as `sockets` takes them (state, sport, dport, src, dst,
    pid, comm, container; and, or, not, parentheses); an event matches `state X`
    when its socket was in X before or after it. A port the filter requires is
    also set as the kernel's filter.
    \b
    Examples:
      halfopen trace --port 8080
      halfopen trace state close-wait sport = :8080
      halfopen trace --pid 812 --duration 30 --summary
      halfopen trace --jsonl | jq 'select(.event == "reset-received")'
    """
    if as_json and jsonl:
        raise UsageError("choose one of --json, --jsonl")
    flt = trace_filter.compile_filter(filter_words)
    wanted = trace_filter.matcher(flt)
    kport = port if port is not None else trace_filter.kernel_port(flt)
    if pid is not None and not os.path.isdir(f"/proc/{pid}"):
        raise UsageError(f"--pid {pid}: no such process")
    reader = _open_reader(TraceOptions(port=kport, pids=(pid,) if pid is not None else ()))
    output = _Output(sys.stdout, wanted, pid, port, container, summary, jsonl, as_json)
    old_term = signal.signal(signal.SIGTERM, _on_term)
    started = time.monotonic()
    try:
        for name in reader.stale_removed:
            click.echo(f"halfopen: note: removed the trace instance {name} a killed halfopen left", err=True)
        for note in reader.notes:
            click.echo(f"halfopen: note: {note}", err=True)
        joiner = Joiner(reader.epoch, OwnerLookup(port=kport), reader.saved_tgids, reader.follow)
        _follow(reader, joiner, output, duration, started)
        lost = reader.lost()
    finally:
        signal.signal(signal.SIGTERM, old_term)
        reader.close()
    output.report(reader, time.monotonic() - started, lost)
    return 0


def _open_reader(options: TraceOptions) -> TraceReader:
    try:
        return TraceReader.open(options)
    except PermissionError as exc:
        raise NotPermitted(f"cannot trace: {exc.strerror or exc} (tracefs needs root)") from None
    except OSError as exc:
        raise HalfopenError(f"cannot trace: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None


def _follow(reader: TraceReader, joiner: Joiner, output: _Output, duration: float | None,
            started: float) -> None:
    """Read until `duration` ends, or Ctrl-C or SIGTERM; then what the buffers still hold."""
    try:  # Ctrl-C or SIGTERM from here on is how a trace ends: report what was read
        joiner.learn()
        click.echo(f"halfopen: tracing {', '.join(reader.enabled)} "
                   f"(instance {reader.instance.name}); Ctrl-C to stop", err=True)
        while duration is None or time.monotonic() - started < duration:
            raw = reader.poll()
            joiner.feed(raw)
            for ev, flow in joiner.ready():
                output.keep(ev, flow)
            if output.jsonl:
                output.out.flush()
            if len(raw) < BUSY_EVENTS:  # busy: read again at once, before a buffer fills
                time.sleep(TICK_S)
    except (KeyboardInterrupt, _Stop):
        pass
    joiner.feed(reader.poll())
    for ev, flow in joiner.ready(force=True):
        output.keep(ev, flow)


@dataclass
class _Output:
    """What `trace` keeps of the events (the filters the kernel could not apply), and how
    it writes them: a line, a JSON line each as they come, or one document at the end."""

    out: IO[str]
    wanted: Callable[[TraceEvent, Flow | None], bool]  # the FILTER words
    pid: int | None
    port: int | None
    container: str | None
    summary: bool
    jsonl: bool
    as_json: bool
    fold: trace_out.Summary = field(default_factory=trace_out.Summary)
    kept: list[dict] = field(default_factory=list)  # --json: the events, for the end

    def keep(self, ev: TraceEvent, flow: Flow | None) -> None:
        if self.pid is not None and ev.pid != self.pid:
            return
        if self.port is not None and self.port not in (_port_of(ev.src), _port_of(ev.dst)):
            return  # tcp_send_reset has no port fields for the kernel to filter on
        if not self.wanted(ev, flow):
            return
        if self.container is not None and not (flow and flow.owner and flow.owner.container
                                               and flow.owner.container.matches(self.container)):
            return  # the `container WORD` filter's rule: name, pod, namespace/pod, id prefix
        self.fold.add(ev, flow)
        if self.summary:
            return
        if self.jsonl:
            trace_out.write_jsonl(ev, self.out)
        elif self.as_json:
            self.kept.append(ev.to_dict())
        else:
            self.out.write(trace_out.event_line(ev) + "\n")

    def report(self, reader: TraceReader, elapsed: float, lost: int) -> None:
        """The end: the summary or the --json document, and the count on stderr."""
        out = self.out
        notes = list(reader.notes)
        if reader.missed_pages:
            notes.append(f"{reader.missed_pages} buffer pages said events were lost before them")
        if self.summary and (self.as_json or self.jsonl):
            doc = self.fold.document(elapsed, lost, notes)
            doc["events_read"] = reader.events_read
            json.dump(doc, out, indent=None if self.jsonl else 2)
            out.write("\n")
        elif self.summary:
            out.write("\n".join(self.fold.text(elapsed, lost)) + "\n")
        elif self.as_json:
            json.dump({"schema": trace_out.SCHEMA, "duration_s": round(elapsed, 3), "lost_events": lost,
                       "notes": notes, "events": self.kept}, out, indent=2)
            out.write("\n")
        out.flush()
        click.echo(f"halfopen: trace: {self.fold.events} events, {lost} lost", err=True)
