"""`halfopen trace`: the kernel's own record of how connections end, from tracefs."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from types import FrameType

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
    try:
        reader = TraceReader.open(TraceOptions(port=kport, pids=(pid,) if pid is not None else ()))
    except PermissionError as exc:
        raise NotPermitted(f"cannot trace: {exc.strerror or exc} (tracefs needs root)") from None
    except OSError as exc:
        raise HalfopenError(f"cannot trace: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None
    old_term = signal.signal(signal.SIGTERM, _on_term)
    out = sys.stdout
    fold = trace_out.Summary()
    kept: list[dict] = []
    started = time.monotonic()

    def keep(ev: TraceEvent, flow: Flow | None) -> None:
        if pid is not None and ev.pid != pid:
            return
        if port is not None and port not in (_port_of(ev.src), _port_of(ev.dst)):
            return  # tcp_send_reset has no port fields for the kernel to filter on
        if not wanted(ev, flow):
            return
        if container is not None and not (flow and flow.owner and flow.owner.container
                                          and flow.owner.container.matches(container)):
            return  # the `container WORD` filter's rule: name, pod, namespace/pod, id prefix
        fold.add(ev, flow)
        if summary:
            return
        if jsonl:
            trace_out.write_jsonl(ev, out)
        elif as_json:
            kept.append(ev.to_dict())
        else:
            out.write(trace_out.event_line(ev) + "\n")

    try:
        for name in reader.stale_removed:
            click.echo(f"halfopen: note: removed the trace instance {name} a killed halfopen left", err=True)
        for note in reader.notes:
            click.echo(f"halfopen: note: {note}", err=True)
        joiner = Joiner(reader.epoch, OwnerLookup(port=kport), reader.saved_tgids, reader.follow)
        try:  # Ctrl-C or SIGTERM from here on is how a trace ends: report what was read
            joiner.learn()
            click.echo(f"halfopen: tracing {', '.join(reader.enabled)} "
                       f"(instance {reader.instance.name}); Ctrl-C to stop", err=True)
            while duration is None or time.monotonic() - started < duration:
                raw = reader.poll()
                joiner.feed(raw)
                for ev, flow in joiner.ready():
                    keep(ev, flow)
                if jsonl:
                    out.flush()
                if len(raw) < BUSY_EVENTS:  # busy: read again at once, before a buffer fills
                    time.sleep(TICK_S)
        except (KeyboardInterrupt, _Stop):
            pass
        joiner.feed(reader.poll())
        for ev, flow in joiner.ready(force=True):
            keep(ev, flow)
        lost = reader.lost()
    finally:
        signal.signal(signal.SIGTERM, old_term)
        reader.close()
    elapsed = time.monotonic() - started
    notes = list(reader.notes)
    if reader.missed_pages:
        notes.append(f"{reader.missed_pages} buffer pages said events were lost before them")
    if summary and (as_json or jsonl):
        doc = fold.document(elapsed, lost, notes)
        doc["events_read"] = reader.events_read
        json.dump(doc, out, indent=None if jsonl else 2)
        out.write("\n")
    elif summary:
        out.write("\n".join(fold.text(elapsed, lost)) + "\n")
    elif as_json:
        json.dump({"schema": trace_out.SCHEMA, "duration_s": round(elapsed, 3), "lost_events": lost,
                   "notes": notes, "events": kept}, out, indent=2)
        out.write("\n")
    out.flush()
    click.echo(f"halfopen: trace: {fold.events} events, {lost} lost", err=True)
    return 0
