"""Which sockets a kill names: exactly those the filter matches (what it may
touch of them is fix.safety's to say)."""

from __future__ import annotations

from ..collect import netns
from ..collect import sockets as collector
from ..model import filter as filters
from ..model.socket import Socket


def matching(flt: filters.Filter, spaces: tuple[netns.Namespace, ...],
             proc: str = "/proc") -> list[Socket]:
    """Every socket `flt` matches, with owners; sock_diag only (a kill needs cookies)."""
    query = collector.Query(filter=flt, owners=True, namespaces=spaces, source="sock_diag",
                            proc=proc)
    return list(collector.collect(query).sockets)
