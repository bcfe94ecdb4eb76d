"""Take a Snapshot: collect the sockets of a query into one record.

With `host=True` the host collectors run too (collect.host.collect_host) and
fill Snapshot.host_facts: counters sampled `window` seconds apart, limits of
the processes that own the snapshot's sockets, conntrack, the kernel log.
"""

from __future__ import annotations

import datetime
import os

from ..model.snapshot import Snapshot
from . import netns, sockets


def take(query: sockets.Query, host: bool = False, window: float = 3.0) -> Snapshot:
    collection = sockets.collect(query)
    socks = list(collection.sockets)
    uname = os.uname()
    owner_map = collection.owner_map
    snap = Snapshot(
        host=uname.nodename, kernel=uname.release,
        taken_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source=collection.source,
        namespaces=sorted({s.netns for s in socks} | {ns.name for ns in query.namespaces}),
        sockets=socks,
        processes=dict(owner_map.processes) if owner_map else {},
        notes=collection.notes,
    )
    if host:
        from .host import collect_host  # only the doctor pays for the import
        spaces = query.namespaces or (netns.current(query.proc),)
        pids = sorted({o.pid for s in socks for o in (s.owners or ())})
        snap.host_facts = collect_host(spaces, pids, window,
                                       proc=query.proc)
    return snap


def take_full(query: sockets.Query, window: float = 3.0) -> Snapshot:
    """take() with the host facts: what `halfopen doctor` reads."""
    return take(query, host=True, window=window)
