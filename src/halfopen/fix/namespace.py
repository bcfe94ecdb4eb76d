"""A finding's "netns" word -> a Namespace to enter, and is it still the same one.

The doctor labels namespaces as collect.netns.label does: "host", an
`ip netns` name, "pod:NAMESPACE/POD", or "net:[INODE]" for an unnamed one. A name or an inode
can come back as another namespace (deleted, then recreated; inodes are
reused at once), so each action compares the namespace's cookie, which the
kernel never reuses, with the one recorded (`same`); the inode is recorded
too and compared when the kernel has no cookie (before Linux 5.14).
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ..collect import netns
from ..errors import NamespaceError

_UNNAMED = re.compile(r"net:\[(\d+)\]\Z")


def find(name: str | None, proc: str = "/proc") -> netns.Namespace:
    if name in (None, "", netns.HOST):
        return netns.current(proc)
    match = _UNNAMED.match(name)
    if match is None:
        return netns.named(name)
    inode = int(match.group(1))
    for space in netns.all_namespaces(proc):
        if space.inode == inode:
            return space
    raise NamespaceError(f"network namespace {name} is gone (no process or /run/netns "
                         "entry holds it)")


def identity(space: netns.Namespace, proc: str = "/proc") -> dict[str, Any]:
    """What a journal line or a finding records of a namespace."""
    return {"netns_inode": space.inode, "netns_cookie": netns.cookie(space, proc)}


def differs(space: netns.Namespace, inode: Optional[int], cookie: Optional[int],
            proc: str = "/proc") -> str:
    """'' when `space` is the namespace recorded as (inode, cookie); else why not."""
    if cookie is not None:
        now = netns.cookie(space, proc)
        if now is not None:
            if now == cookie:
                return ""
            return (f"network namespace {space.name} is not the one recorded (cookie "
                    f"{now}, recorded {cookie}): it was deleted and another took its name")
    if inode is not None and space.inode != inode:
        return (f"network namespace {space.name} is not the one recorded (inode "
                f"{space.inode}, recorded {inode})")
    return ""
