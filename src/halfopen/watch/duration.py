"""Durations on the command line: '90s', '15m', '12h', '7d', or plain seconds."""

from __future__ import annotations

from ..errors import UsageError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse(text: str, what: str = "duration") -> float:
    """'7d' -> 604800.0; raise UsageError naming the bad word.

    >>> parse("15m"), parse("2.5"), parse("1w")
    (900.0, 2.5, 604800.0)
    """
    t = text.strip().lower()
    unit = 1
    if t and t[-1] in UNITS:
        unit, t = UNITS[t[-1]], t[:-1]
    try:
        value = float(t) * unit
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise UsageError(f"bad {what} {text!r}: a positive number of seconds, or with a unit "
                         "s, m, h, d, w (e.g. 2, 90s, 15m, 7d)")
    return value
