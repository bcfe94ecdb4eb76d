"""Which sockets a kill may touch: exactly those the filter names, minus protected owners.

Sockets held by pid 1 or by halfopen itself are left alone unless the
filter names that pid (`pid 1`): a broad filter must not reset init's or our
own connections by accident.
"""

from __future__ import annotations

import os

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


def named_pids(expr: filters.Expr | None) -> set[int]:
    if expr is None:
        return set()
    if isinstance(expr, (filters.And, filters.Or)):
        return named_pids(expr.left) | named_pids(expr.right)
    if isinstance(expr, filters.Not):
        return set()  # "not pid 1" names pid 1 only to exclude it
    if isinstance(expr, filters.OwnerIs) and expr.key == "pid":
        return {int(expr.value)}
    return set()


def refused(socks: list[Socket], flt: filters.Filter) -> list[tuple[Socket, str]]:
    """Sockets held by a protected process the filter did not name, with the reason."""
    protected = {1: "pid 1 (init)", os.getpid(): "halfopen itself"}
    for pid in named_pids(flt.expr):
        protected.pop(pid, None)
    out = []
    for sock in socks:
        for owner in sock.owners:
            if owner.pid in protected:
                out.append((sock, f"held by {protected[owner.pid]}; name it with "
                                  f"`pid {owner.pid}` to include it"))
                break
    return out
