"""The last samples in memory, for the live view's sparklines and growth fits."""

from __future__ import annotations

from collections import deque

from . import trend
from .sample import Sample


class Window:
    """A ring of samples no older than `seconds` (and at most `limit` of them)."""

    def __init__(self, seconds: float = 300.0, limit: int = 600) -> None:
        self.seconds = seconds
        self.samples: deque[Sample] = deque(maxlen=limit)

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        while self.samples and sample.t - self.samples[0].t > self.seconds:
            self.samples.popleft()

    def state_series(self, state: str) -> list[int]:
        return [s.state_totals().get(state, 0) for s in self.samples]

    def proc_points(self, pid: int, what: str = "close_wait") -> list[tuple[float, float]]:
        """(t, value) of a process over the window; `what` a state name or "fds"."""
        pts = []
        for s in self.samples:
            p = s.processes.get(pid)
            if p is None:
                continue
            v = p.fds if what == "fds" else p.states.get(what, 0)
            if v is not None:
                pts.append((s.t, float(v)))
        return pts

    def growth_per_minute(self, pid: int, what: str = "close_wait") -> float | None:
        return trend.per_minute(self.proc_points(pid, what))
