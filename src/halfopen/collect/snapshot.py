"""Take a Snapshot: collect the sockets of a query into one record."""

from __future__ import annotations

import datetime
import os

from ..model.snapshot import Snapshot
from . import sockets


def take(query: sockets.Query) -> Snapshot:
    collection = sockets.collect(query)
    socks = list(collection.sockets)
    uname = os.uname()
    owner_map = collection.owner_map
    return Snapshot(
        host=uname.nodename, kernel=uname.release,
        taken_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source=collection.source,
        namespaces=sorted({s.netns for s in socks} | {ns.name for ns in query.namespaces}),
        sockets=socks,
        processes=dict(owner_map.processes) if owner_map else {},
        notes=collection.notes,
    )
