"""Growth rates by a least-squares fit, and the time left before a limit.

A leak is a rate: two points give noise, a fit over the window gives the
trend. Pure functions; times are in seconds, rates per minute.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..model.history import slope_per_s as slope


def per_minute(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares growth per minute.

    >>> per_minute([(0, 10), (30, 14), (60, 21), (90, 25)])
    10.4
    """
    s = slope(points)
    return None if s is None else round(s * 60, 6)


def seconds_to_limit(current: float, limit: float | None, growth_per_min: float | None) -> float | None:
    """Seconds until `current` reaches `limit` at the given growth; None if never.

    >>> seconds_to_limit(900, 1024, 62)
    120.0
    """
    if limit is None or growth_per_min is None or growth_per_min <= 0:
        return None
    return max(0.0, (limit - current) / growth_per_min * 60)
