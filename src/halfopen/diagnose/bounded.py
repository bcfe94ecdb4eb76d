"""Counters that stop growing: the doctor's memory must not grow with the socket table.

A group's counter tracks at most `limit` distinct keys. A socket whose key
would be one too many is still counted in the total but under no key, and the
counter remembers that it overflowed: from then on its number of keys is a
lower bound, and so may be a key's rank. The rule that reads it says so in a
note (Tally.notes). Below the bound every figure is exact, and in the order a
Counter fed the same sockets would give (most_common breaks ties by first
insertion).

    >>> c = Keys(2)
    >>> for k in "abca":
    ...     c.add(k)
    >>> c.most_common(), c.total, c.overflowed
    ([('a', 2), ('b', 1)], 4, True)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

KEYS_PER_GROUP = 4096  # keys one group's counter tracks (peers, ports, services of a pile)
DISTINCT = 65536  # distinct values counted exactly (SYN sources of a port, addresses)
DESTINATIONS = 16384  # destinations tracked per namespace (time-wait-pressure)


class Keys:
    """A Counter of at most `limit` keys; counts past that go to `total` only."""

    __slots__ = ("counts", "limit", "total", "overflowed")

    def __init__(self, limit: int = KEYS_PER_GROUP) -> None:
        self.counts: Counter = Counter()
        self.limit = limit
        self.total = 0
        self.overflowed = False

    def add(self, key: Hashable, n: int = 1) -> None:
        self.total += n
        counts = self.counts
        if key in counts:
            counts[key] += n
        elif len(counts) < self.limit:
            counts[key] = n
        else:
            self.overflowed = True

    def __len__(self) -> int:
        """The number of distinct keys (a lower bound once overflowed)."""
        return len(self.counts)

    def __iter__(self):
        return iter(self.counts)

    def most_common(self, k: int | None = None) -> list:
        return self.counts.most_common(k)

    def max(self) -> int:
        return max(self.counts.values(), default=0)


class Distinct:
    """The first value seen and whether any other was: enough to say "one port" or not.

    >>> d = Distinct()
    >>> d.add(80); d.add(80); d.single
    80
    >>> d.add(443); d.single is None
    True
    """

    __slots__ = ("first", "many", "seen")

    def __init__(self) -> None:
        self.first: Hashable = None
        self.many = False
        self.seen = False

    def add(self, value: Hashable) -> None:
        if not self.seen:
            self.first, self.seen = value, True
        elif value != self.first:
            self.many = True

    @property
    def single(self):
        """The one value, or None when there were none or several."""
        return self.first if self.seen and not self.many else None


class Capped:
    """A set of at most `limit` members (a lower bound past it)."""

    __slots__ = ("members", "limit", "overflowed")

    def __init__(self, limit: int = DISTINCT) -> None:
        self.members: set = set()
        self.limit = limit
        self.overflowed = False

    def add(self, value: Hashable) -> None:
        members = self.members
        if value in members:
            return
        if len(members) < self.limit:
            members.add(value)
        else:
            self.overflowed = True

    def __contains__(self, value: object) -> bool:
        return value in self.members
