"""Take a Snapshot: collect the sockets of a query into one record.

With `host=True` the host collectors run too (collect.host.HostRun) and fill
Snapshot.host_facts: counters sampled `window` seconds apart (the samples
bracket the socket dump), limits of the processes that own the snapshot's
sockets, conntrack, the kernel log.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..model.snapshot import Snapshot
from ..model.socket import Socket
from . import netns, owners, sockets

if TYPE_CHECKING:
    from .owner_cache import OwnerCache


def take(query: sockets.Query, host: bool = False, window: float = 3.0,
         timings: dict[str, float] | None = None,
         sink: Callable[[Socket], None] | None = None,
         cache: OwnerCache | None = None) -> Snapshot:
    """One snapshot; `timings`, when given, gets the seconds spent on "sockets"
    (the dump with its owners) and "host" (the host collectors, window included).

    With a `sink` each socket is handed to it as the dump streams and none is
    kept: Snapshot.sockets stays empty (the doctor's Tally, diagnose.tally).
    Without one, Snapshot.sockets holds them all (--save-snapshot, watch).

    With a `cache` (the exporter's and the watch's owner cache) the host run's
    fd scan is the cache's full one (OwnerCache.full_scan) and its map gives
    the owners: one readlink pass fills both, where the cache's next refresh
    would have read every link again."""
    hostrun = owner_map = None
    start = time.perf_counter()
    if host:
        # The counter window runs around the socket dump instead of after it:
        # first sample, one fd scan (owners, limits, stale fds), the dump, the
        # other host facts, then the second sample when the window is over.
        from .host import HostRun  # noqa: PLC0415 - only the doctor pays for the import
        spaces = query.namespaces or (netns.current(query.proc),)
        hostrun = HostRun.begin(spaces, window, proc=query.proc)
        scanned = hostrun.scan_fds(cache.full_scan if cache is not None else None)
        if scanned is not None and (query.owners or query.filter.needs_owners):
            owner_map = cache.owner_map if cache is not None else \
                owners.from_scans(*scanned, proc=query.proc)
    dump_start = time.perf_counter()
    collection = sockets.collect(query, owner_map)
    seen = _Seen()
    socks: list[Socket] = []
    keep = socks.append if sink is None else sink
    with gc_paused():
        for s in collection.sockets:
            seen.add(s)
            keep(s)
    dumped = time.perf_counter()
    uname = os.uname()
    owner_map = collection.owner_map
    snap = Snapshot(
        host=uname.nodename, kernel=uname.release,
        taken_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source=collection.source,
        namespaces=sorted(seen.netns | {ns.name for ns in query.namespaces}),
        sockets=socks,
        processes=dict(owner_map.processes) if owner_map else {},
        notes=collection.notes,
    )
    if hostrun is not None:
        snap.host_facts = hostrun.finish(sorted(seen.pids), _dumped_tcp(query, owner_map))
    if timings is not None:
        # the fd scan before the dump serves as its owner map: count it with the host run
        timings["sockets"] = dumped - dump_start if hostrun is not None else dumped - start
        if hostrun is not None:
            timings["host"] = (dump_start - start) + (time.perf_counter() - dumped)
    return snap


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a dump is kept in a list.

    Each Socket, owner tuple and tcp_info tuple counts as an allocation for
    the collector, and the list keeps them all, so its full collections walk
    every socket kept so far again and again: half the time of a 100k-socket
    snapshot. The records hold no reference cycles; the collector runs again
    afterwards (if it was on).
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


class _Seen:
    """What take() needs of the sockets after the dump, gathered as they pass:
    their namespaces and their owners' pids."""

    __slots__ = ("netns", "pids")

    def __init__(self) -> None:
        self.netns: set[str] = set()
        self.pids: set[int] = set()

    def add(self, s: Socket) -> None:
        self.netns.add(s.netns)
        for o in s.owners or ():
            self.pids.add(o.pid)


def _dumped_tcp(query: sockets.Query, owner_map: owners.OwnerMap | None):
    """What a dump of every socket told of the namespaces' TCP tables, for the
    stale-fd check: the dump looked up every socket's owner, so the fd scan's
    inodes it never looked up are those it did not hold (Holders.unfound)."""
    if owner_map is None or not (query.filter.is_empty and set(query.families) == {4, 6}):
        return None
    from .host.stalefds import DumpedTcp  # noqa: PLC0415 - as HostRun: the doctor's import
    spaces = query.namespaces or (netns.current(query.proc),)
    return DumpedTcp(frozenset(ns.inode for ns in spaces), set(owner_map.owners.unfound()))


def take_full(query: sockets.Query, window: float = 3.0,
              sink: Callable[[Socket], None] | None = None) -> Snapshot:
    """take() with the host facts: what `halfopen doctor` reads."""
    return take(query, host=True, window=window, sink=sink)
