"""Earlier samples the rules may use for growth: per-process counts over time.

A record and one fit; reading them from a `watch --record` file is
watch.history_db.load_history. The doctor works without history (growth is then estimated from socket ages,
and said so). With history (`--history FILE.db`, written by `halfopen
watch --record`), close-wait and fd growth come from a least-squares fit over
the recorded samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field

from halfopen.records import record


@record
class History:
    """Per-process series: (pid, metric) -> [(epoch seconds, value)], oldest first.

    Metrics: "close_wait" (CLOSE_WAIT sockets held), "fds" (open fds).
    """

    series: dict[tuple[int, str], list[tuple[float, float]]] = field(default_factory=dict)
    source: str = ""

    def points(self, pid: int, metric: str) -> list[tuple[float, float]]:
        return self.series.get((pid, metric), [])

    def add(self, pid: int, metric: str, at: float, value: float) -> None:
        self.series.setdefault((pid, metric), []).append((at, value))


def slope_per_s(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, y) points, per second; None under 2 points or 0 span.

    >>> slope_per_s([(0, 10), (60, 20), (120, 30)])
    0.16666666666666666
    """
    n = len(points)
    if n < 2:
        return None
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in points) / var
