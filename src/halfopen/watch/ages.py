"""CLOSE_WAIT ages that only grow: each socket dated at its first sighting.

tcp_info's last_ack_recv is a lower bound on a socket's time in CLOSE_WAIT
(see sample.py); any later ACK resets it. Keeping, per socket cookie, the
earliest FIN date ever estimated makes the age monotonic across samples.
Memory is bounded by the CLOSE_WAIT sockets present now.
"""

from __future__ import annotations

from .sample import Sample


class CloseWaitAges:
    def __init__(self) -> None:
        self.fin_at: dict[int, float] = {}  # cookie -> earliest estimated FIN time

    def update(self, sample: Sample) -> None:
        """Refresh from `sample` and rewrite its processes' oldest_close_wait_s."""
        fresh: dict[int, float] = {}
        oldest: dict[int, float] = {}
        old = self.fin_at
        for cookie, (pid, age) in sample.close_wait.items():
            at = sample.t - (age or 0.0)
            prev = old.get(cookie)
            if prev is not None and prev < at:
                at = prev
            fresh[cookie] = at
            if pid and (pid not in oldest or at < oldest[pid]):
                oldest[pid] = at
        self.fin_at = fresh
        for pid, at in oldest.items():
            p = sample.processes.get(pid)
            if p is not None:
                p.oldest_close_wait_s = max(p.oldest_close_wait_s or 0.0, sample.t - at)
