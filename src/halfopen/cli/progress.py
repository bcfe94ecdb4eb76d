"""A progress line on stderr for what waits or takes a while, on a terminal only.

`doctor --window 3` sleeps between its two counter samples and a dump of a
million sockets takes seconds; without a word the terminal looks hung. The
line appears only after AFTER_S (a quick command prints nothing), is redrawn
in place five times a second, and is erased before the command's output. When
stderr is not a terminal (a pipe, a file, cron, a monitoring system) nothing is
written at all, so logs and captured stderr stay clean.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TypeVar

T = TypeVar("T")

AFTER_S = 0.5  # quiet for quick work
TICK_S = 0.2
_ERASE = "\r\x1b[K"  # carriage return, erase to the end of the line (ECMA-48 EL)


class Meter:
    """What the block has done so far, for the line: `meter.count += 1` per item."""

    __slots__ = ("count", "unit")

    def __init__(self, unit: str = "") -> None:
        self.count = 0
        self.unit = unit


def _line(what: str, elapsed: float, total_s: float | None, meter: Meter) -> str:
    """'halfopen: sampling counters... 1.2/3 s'

    >>> _line("reading sockets", 1.25, None, Meter()), _line("sampling", 1.0, 3.0, Meter())
    ('halfopen: reading sockets... 1.2 s', 'halfopen: sampling... 1.0/3 s')
    >>> m = Meter("sockets"); m.count = 120000; _line("reading", 2, None, m)
    'halfopen: reading... 120,000 sockets, 2.0 s'
    """
    tail = f"{elapsed:.1f}/{total_s:g} s" if total_s else f"{elapsed:.1f} s"
    if meter.unit:
        tail = f"{meter.count:,} {meter.unit}, {tail}"
    return f"halfopen: {what}... {tail}"


@contextmanager
def progress(what: str, total_s: float | None = None, stream: IO[str] | None = None,
             enabled: bool = True, unit: str = "") -> Iterator[Meter]:
    """Show `what` with the seconds elapsed (of `total_s`) and the meter's count of
    `unit` while the block runs, if `stream` (stderr) is a terminal and `enabled`."""
    out = sys.stderr if stream is None else stream
    meter = Meter(unit)
    if not (enabled and is_terminal(out)):
        yield meter
        return
    done = threading.Event()
    drawn = threading.Event()
    start = time.monotonic()

    def draw() -> None:
        if done.wait(AFTER_S):
            return
        while not done.is_set():
            out.write(_ERASE + _line(what, time.monotonic() - start, total_s, meter))
            out.flush()
            drawn.set()
            done.wait(TICK_S)

    # a daemon: an interrupted command (Ctrl-C, --timeout) never waits for it
    painter = threading.Thread(target=draw, name="halfopen-progress", daemon=True)
    painter.start()
    try:
        yield meter
    finally:
        done.set()
        painter.join()
        if drawn.is_set():
            out.write(_ERASE)
            out.flush()


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def counting(items: Iterable[T], what: str, unit: str, enabled: bool = True,
             stream: IO[str] | None = None) -> Iterator[T]:
    """`items`, with a progress line counting them until the last one is out (a socket
    table that is read whole before its first line is printed)."""
    with progress(what, stream=stream, enabled=enabled, unit=unit) as meter:
        for item in items:
            meter.count += 1
            yield item
