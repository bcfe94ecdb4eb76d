"""Durations on the command line: '90s', '15m', '12h', '7d', or plain seconds."""

from __future__ import annotations

import re

from ..errors import UsageError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_S = 10 * 365 * 86400.0  # ten years: more would overflow time.sleep and timestamps
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{0,9})?|\.[0-9]{1,9}")


def parse(text: str, what: str = "duration") -> float:
    """'7d' -> 604800.0; raise UsageError naming the bad word.

    >>> parse("15m"), parse("2.5"), parse("1w")
    (900.0, 2.5, 604800.0)
    """
    t = text.strip().lower()
    unit = 1
    if t and t[-1] in UNITS:
        unit, t = UNITS[t[-1]], t[:-1]
    # ASCII digits only: float() also reads '١٥', 'inf', 'nan' and '1e309'.
    value = float(t) * unit if _NUMBER.fullmatch(t) else float("nan")
    if not 0 < value <= MAX_S:
        raise UsageError(f"bad {what} {text!r}: a positive number of seconds, or with a unit "
                         "s, m, h, d, w, at most ten years (e.g. 2, 90s, 15m, 7d)")
    return value
