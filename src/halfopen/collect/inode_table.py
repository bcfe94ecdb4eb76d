"""socket inode -> holder (pid << 32 | fd), as an open-addressing hash table in two arrays.

A dict of int keys and int values costs about 110 bytes a socket (the key and
the value objects, the entry, the index): at a million sockets the owner map
was the largest thing the doctor, the watch and the exporter held. Two
array('Q') at most half full cost 32 bytes a socket, and a lookup costs what
a dict's does there (both are a cache miss or two: about 0.7 us).

Linear probing from a Fibonacci hash (Knuth, TAOCP 6.4): socket inodes come
in runs (get_next_ino in fs/inode.c hands each CPU a batch of 1,024), which
the multiplication spreads over the table. Slot key 0 is empty: no socket has
inode 0 (sock_alloc takes one from get_next_ino, which skips 0). An inode
with several holders (a socket shared by a fork or passed over a UNIX socket)
keeps them in `shared`; inodes that do not fit a slot (0, or past 64 bits:
only a recorded /proc tree has them) are kept in `odd`.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress

_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / the golden ratio
_MASK64 = (1 << 64) - 1
SHARED = _MASK64  # a slot's value when its inode has several holders: see `shared`


class InodeTable:
    """inode -> holders, built once from parallel arrays of inodes and holders.

    `left` marks the inodes no lookup has found yet: after a dump of every
    socket looked each one up, they are the scanned sockets the dump did not
    hold (the doctor's stale-fd candidates, collect.take).
    """

    __slots__ = ("keys", "values", "left", "shift", "mask", "shared", "odd", "count")

    def __init__(self, inodes: Sequence[int], holders: Sequence[int]) -> None:
        bits = max(4, (2 * len(inodes) - 1).bit_length())  # at most half full
        size = 1 << bits
        self.keys = keys = array("Q", bytes(8 * size))
        self.values = values = array("Q", bytes(8 * size))
        # 1 for every slot, then 0 once found: unfound() skips the empty ones
        self.left = bytearray(b"\x01") * size
        self.shift = shift = 64 - bits
        self.mask = size - 1
        self.shared: dict[int, tuple[int, ...]] = {}
        self.odd: dict[int, tuple[int, ...]] = {}
        golden, mask64 = _GOLDEN, _MASK64
        for inode, holder in zip(inodes, holders):
            i = ((inode * golden) & mask64) >> shift
            if keys[i] == 0 and inode:  # the common case: a free slot at once
                try:
                    keys[i] = inode
                except OverflowError:  # past 64 bits
                    pass
                else:
                    values[i] = holder
                    continue
            self._insert(inode, holder, i)
        self.count = size - keys.count(0) + len(self.odd)

    def add(self, pid: int, fds: Iterable[int], inodes: Iterable[int]) -> None:
        """Insert the holders pid << 32 | fd of one process's sockets."""
        high = pid << 32
        golden, mask64 = _GOLDEN, _MASK64
        for fd, inode in zip(fds, inodes):
            if 2 * (self.count + 1) > len(self.keys):
                self._resize(2 * len(self.keys))
            keys = self.keys
            i = ((inode * golden) & mask64) >> self.shift
            if keys[i] == 0 and 0 < inode <= mask64:
                keys[i] = inode
                self.values[i] = high | fd
                self.left[i] = 1
                self.count += 1
                continue
            self.count += self._insert(inode, high | fd, i)

    def discard(self, pid: int, fds: Iterable[int], inodes: Iterable[int]) -> None:
        """Remove the holders pid << 32 | fd of one process's sockets (those
        the table does not hold are skipped)."""
        high = pid << 32
        for fd, inode in zip(fds, inodes):
            self._remove(inode, high | fd)
        if len(self.keys) > 16 and 8 * self.count < len(self.keys):
            self._resize(len(self.keys) // 2)

    def reset_found(self) -> None:
        """Every inode unfound again (before the next dump's lookups)."""
        self.left = bytearray(b"\x01") * len(self.keys)

    def _remove(self, inode: int, holder: int) -> None:
        if not 0 < inode <= _MASK64:
            held = self.odd.get(inode, ())
            if holder in held:
                rest = tuple(h for h in held if h != holder)
                if rest:
                    self.odd[inode] = rest
                else:
                    del self.odd[inode]
                    self.count -= 1
            return
        keys, values, mask = self.keys, self.values, self.mask
        i = ((inode * _GOLDEN) & _MASK64) >> self.shift
        while True:
            key = keys[i]
            if key == inode:
                break
            if key == 0:
                return
            i = (i + 1) & mask
        value = values[i]
        if value == SHARED:
            rest = tuple(h for h in self.shared[inode] if h != holder)
            if len(rest) == 1:
                del self.shared[inode]
                values[i] = rest[0]
            else:
                self.shared[inode] = rest
            return
        if value != holder:
            return
        # Algorithm R: move each later entry of the run whose home slot is not
        # cyclically in (i, j] into the hole, until an empty slot ends the run
        left, shift = self.left, self.shift
        j = i
        while True:
            j = (j + 1) & mask
            key = keys[j]
            if key == 0:
                break
            home = ((key * _GOLDEN) & _MASK64) >> shift
            if (j - home) & mask >= (j - i) & mask:
                keys[i], values[i], left[i] = key, values[j], left[j]
                i = j
        keys[i] = values[i] = 0
        left[i] = 1
        self.count -= 1

    def _resize(self, size: int) -> None:
        """Rehash into `size` slots (a power of two); shared and odd stay."""
        old_keys, old_values, old_left = self.keys, self.values, self.left
        bits = size.bit_length() - 1
        self.keys = keys = array("Q", bytes(8 * size))
        self.values = values = array("Q", bytes(8 * size))
        self.left = left = bytearray(b"\x01") * size
        self.shift = shift = 64 - bits
        self.mask = mask = size - 1
        golden, mask64 = _GOLDEN, _MASK64
        for k, v, f in zip(compress(old_keys, old_keys), compress(old_values, old_keys),
                           compress(old_left, old_keys)):
            i = ((k * golden) & mask64) >> shift
            while keys[i]:
                i = (i + 1) & mask
            keys[i], values[i], left[i] = k, v, f

    def _insert(self, inode: int, holder: int, i: int) -> bool:
        """Insert from slot i on; True when the inode was not in the table."""
        if not 0 < inode <= _MASK64:
            held = self.odd.get(inode, ())
            self.odd[inode] = held + (holder,)
            return not held
        keys, values = self.keys, self.values
        while keys[i] not in (0, inode):
            i = (i + 1) & self.mask
        if keys[i] == 0:
            keys[i], values[i] = inode, holder
            self.left[i] = 1
            return True
        value = values[i]
        self.shared[inode] = self.shared[inode] + (holder,) if value == SHARED else (value, holder)
        values[i] = SHARED
        return False

    def holders(self, inode: int) -> tuple[int, ...]:
        """The inode's holders, () if none; marks it found."""
        if not 0 < inode <= _MASK64:
            return self.odd.get(inode, ())
        keys, mask = self.keys, self.mask
        i = ((inode * _GOLDEN) & _MASK64) >> self.shift
        while True:
            key = keys[i]
            if key == inode:
                break
            if key == 0:
                return ()
            i = (i + 1) & mask
        self.left[i] = 0
        held = self.values[i]
        return self.shared[inode] if held == SHARED else (held,)

    def __iter__(self) -> Iterator[int]:
        yield from (k for k in self.keys if k)
        yield from self.odd

    def unfound(self) -> Iterator[int]:
        """The inodes no lookup has found (odd ones are never marked: all of them)."""
        yield from (k for k in compress(self.keys, self.left) if k)
        yield from self.odd

    def __len__(self) -> int:
        return self.count

