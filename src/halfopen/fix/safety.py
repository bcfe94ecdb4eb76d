"""What halfopen will not touch unless a person names it: one policy for kill, keepalive and fix.

- pid 1 (init) and halfopen itself (and, for `fix`, the process that started
  it): a broad filter or a finding must not reset or change them by accident.
  A kill filter that names the pid (`pid 1`) includes it.
- Listening sockets: a kill that matches one is refused (`exclude listening`
  or --include-listeners), and a kill fix that matches one stays manual.
- Namespaces: with --netns/--netns-pid/--all-netns, `fix` acts only in the
  namespaces chosen; findings and steps about any other namespace, the host
  included, are left out or left manual.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..model import filter as filters
from ..model.finding import Finding
from ..model.host import HOST
from ..model.socket import Socket
from ..model.states import TcpState

OUTSIDE = "outside the namespaces chosen"


def guarded(pid: int) -> str:
    """A reason not to touch `pid` unless a person named it on the command line."""
    if pid == 1:
        return "pid 1 (init) is never changed by `halfopen fix`"
    if pid in (os.getpid(), os.getppid()):
        return "halfopen does not change itself"
    return ""


def named_pids(expr: filters.Expr | None) -> set[int]:
    """The pids a filter names to include (`pid N`; not under `not`)."""
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


def listening(socks: Iterable[Socket]) -> list[Socket]:
    """The listening sockets among `socks`: a kill must not take them by accident."""
    return [s for s in socks if s.state == TcpState.LISTEN]


def in_namespaces(findings: list[Finding], names: set[str] | None) -> tuple[list[Finding], list[str]]:
    """With namespaces chosen: only findings about them, and a note on the rest.

    The doctor also reports host-wide facts (the top fd users of every namespace,
    file-max); `fix --netns X` must not change a process or the host outside X.
    """
    if names is None:
        return findings, []
    kept = [f for f in findings if (f.subject.netns or HOST) in names]
    left = len(findings) - len(kept)
    return kept, ([f"{left} finding(s) about other namespaces or the host left out: {OUTSIDE}"]
                  if left else [])


def outside(netns: str, names: set[str] | None) -> str:
    """Why an automatic step in `netns` must stay manual; "" when it may run."""
    if names is None or netns in names:
        return ""
    return f"acts in namespace {netns}, {OUTSIDE}; run it without --netns if meant"
