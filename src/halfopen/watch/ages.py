"""CLOSE_WAIT ages that only grow: each socket dated at its first sighting.

tcp_info's last_ack_recv is a lower bound on a socket's time in CLOSE_WAIT
(see sample.py); any later ACK resets it. Keeping, per socket cookie, the
earliest FIN date ever estimated makes the age monotonic across samples.
Memory is bounded by the CLOSE_WAIT sockets present now.

The dates live in one open-addressing table (FinDates), updated in place: a
dict rebuilt each sample held two copies during the update (about 48 MiB
for 250k CLOSE_WAIT sockets at a million sockets); the table takes 17 bytes
a slot, at most half full, and no second copy.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

from .sample import Sample

_GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing, as collect.inode_table
_MASK64 = (1 << 64) - 1
_MIN_BITS = 10


class FinDates:
    """socket cookie -> earliest estimated FIN time, in two arrays with linear
    probing. Cookie 0 marks an empty slot (sock_gen_cookie never hands out 0;
    the procfs fallback has no cookies and keeps none). `mark(cookie, at)`
    keeps the earlier date and marks the slot seen; `sweep()` then drops every
    cookie not seen since the last sweep, by backward-shift deletion (Knuth,
    TAOCP 6.4, Algorithm R), so no tombstones pile up."""

    __slots__ = ("keys", "times", "seen", "shift", "mask", "count")

    def __init__(self, bits: int = _MIN_BITS) -> None:
        size = 1 << bits
        self.keys = array("Q", bytes(8 * size))
        self.times = array("d", bytes(8 * size))
        self.seen = bytearray(size)
        self.shift = 64 - bits
        self.mask = size - 1
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def _home(self, cookie: int) -> int:
        return ((cookie * _GOLDEN) & _MASK64) >> self.shift

    def reserve(self, more: int) -> None:
        """Room for `more` new cookies at most half full (a rehash: the one copy,
        on growth only)."""
        need = self.count + more
        if 2 * need <= len(self.keys):
            return
        self._rehash(max(_MIN_BITS, (2 * need - 1).bit_length()))

    def _rehash(self, bits: int) -> None:
        old = [(k, t, m) for k, t, m in zip(self.keys, self.times, self.seen) if k]
        self.__init__(bits)  # type: ignore[misc]
        keys, times, seen, mask = self.keys, self.times, self.seen, self.mask
        for cookie, at, marked in old:
            i = self._home(cookie)
            while keys[i]:
                i = (i + 1) & mask
            keys[i], times[i], seen[i] = cookie, at, marked
        self.count = len(old)

    def mark(self, cookie: int, at: float) -> float:
        """Keep the earlier of `at` and the cookie's date; returns the date kept."""
        keys, mask = self.keys, self.mask
        i = ((cookie * _GOLDEN) & _MASK64) >> self.shift
        key = keys[i]
        while key != cookie and key:
            i = (i + 1) & mask
            key = keys[i]
        if key:
            prev = self.times[i]
            if prev < at:
                at = prev
        else:
            keys[i] = cookie
            self.count += 1
        self.times[i] = at
        self.seen[i] = 1
        return at

    def get(self, cookie: int) -> float | None:
        keys, mask = self.keys, self.mask
        i = self._home(cookie)
        while keys[i]:
            if keys[i] == cookie:
                return self.times[i]
            i = (i + 1) & mask
        return None

    def items(self) -> Iterator[tuple[int, float]]:
        for cookie, at in zip(self.keys, self.times):
            if cookie:
                yield cookie, at

    def sweep(self) -> None:
        """Drop the cookies not marked since the last sweep; clear the marks."""
        keys, seen, mask = self.keys, self.seen, self.mask
        if self.count and seen.count(1) < self.count:
            # a cluster never wraps past an empty slot: start after one
            first = keys.index(0)
            i = (first + 1) & mask
            while i != first:
                while keys[i] and not seen[i]:
                    self._delete(i)
                i = (i + 1) & mask
        seen[:] = bytes(len(seen))
        if len(keys) > 1 << _MIN_BITS and 8 * self.count < len(keys):
            self._rehash(max(_MIN_BITS, (2 * self.count - 1).bit_length()))

    def _delete(self, hole: int) -> None:
        keys, times, seen, mask = self.keys, self.times, self.seen, self.mask
        j = hole
        while True:
            j = (j + 1) & mask
            key = keys[j]
            if not key:
                break
            home = ((key * _GOLDEN) & _MASK64) >> self.shift
            # the entry at j stays when its home lies cyclically in (hole, j]
            if (hole < home <= j) if hole <= j else (home > hole or home <= j):
                continue
            keys[hole], times[hole], seen[hole] = key, times[j], seen[j]
            hole = j
        keys[hole] = 0
        seen[hole] = 0
        self.count -= 1


class CloseWaitAges:
    def __init__(self) -> None:
        self.fin_at = FinDates()  # cookie -> earliest estimated FIN time

    def update(self, sample: Sample) -> None:
        """Refresh from `sample` and rewrite its processes' oldest_close_wait_s."""
        oldest: dict[int, float] = {}
        dates = self.fin_at
        dates.reserve(len(sample.close_wait))
        mark, t = dates.mark, sample.t
        for cookie, (pid, age) in sample.close_wait.items():
            if not cookie:  # procfs: no cookie, nothing to date it by
                continue
            at = mark(cookie, t - (age or 0.0))
            if pid and (pid not in oldest or at < oldest[pid]):
                oldest[pid] = at
        dates.sweep()
        for pid, at in oldest.items():
            p = sample.processes.get(pid)
            if p is not None:
                p.oldest_close_wait_s = max(p.oldest_close_wait_s or 0.0, sample.t - at)
