"""Durations as people read them; shared by the CLI, the doctor and its titles."""

from __future__ import annotations


def seconds(s: float | None) -> str:
    """A duration for a title: 45 -> '45s', 5400 -> '1h30m', 200000 -> '2d07h'.

    >>> [seconds(x) for x in (45, 5400, 200000)]
    ['45s', '1h30m', '2d07h']
    """
    if s is None:
        return "-"
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
