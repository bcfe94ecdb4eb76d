"""The watch loop: sample, record, draw; one frame with --once."""

from __future__ import annotations

import signal
import time

from rich.console import Console, RenderableType
from rich.live import Live
from rich.rule import Rule

from halfopen.records import record

from .. import history_db
from ..sampler import Sampler, Settings
from ..window import Window
from .view import FindingLog, render


@record(frozen=True)
class WatchOptions:
    interval_s: float = 2.0
    window_s: float = 300.0
    record: str | None = None
    retention_s: float = history_db.DEFAULT_RETENTION_S
    once: bool = False
    top: int = 10
    settings: Settings = Settings()


class _Stop(Exception):
    pass


def _on_term(_signo, _frame):
    raise _Stop


def run(opts: WatchOptions, console: Console | None = None) -> int:
    console = console or Console()
    recorder = history_db.Recorder.open(opts.record, opts.retention_s) if opts.record else None
    sampler = Sampler(opts.settings)
    window = Window(opts.window_s)
    log = FindingLog()

    def growth(pid: int, what: str) -> float | None:
        g = window.growth_per_minute(pid, what)
        if g is None and recorder is not None:  # first frames: the recording knows more
            g = history_db.growth_per_minute(recorder.db, pid, what, opts.window_s)
        return g

    def step(height: int | None = None) -> RenderableType:
        sample = sampler.take()
        if recorder is not None:
            recorder.append(sample)
        window.add(sample)
        log.update(sample.t, sample.findings)
        return render(window, log, growth, opts.top, sampler.doctor.note, height)

    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        if opts.once:
            console.print(step())
            return 0
        if not console.is_terminal:
            while True:
                start = time.monotonic()
                console.print(Rule())
                console.print(step())
                console.file.flush()
                time.sleep(max(0.0, opts.interval_s - (time.monotonic() - start)))
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                start = time.monotonic()
                # the terminal's lines now (it may have been resized): a short one
                # gets a frame fitted to it, findings first
                live.update(step(console.size.height), refresh=True)
                time.sleep(max(0.0, opts.interval_s - (time.monotonic() - start)))
    except (_Stop, KeyboardInterrupt):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if recorder is not None:
            recorder.close()
