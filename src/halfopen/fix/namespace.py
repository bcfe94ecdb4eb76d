"""A finding's "netns" word -> a Namespace to enter (whether it is still the same one is
fix.actions.who's to say).

The doctor labels namespaces as collect.netns.label does: "host", an
`ip netns` name, "pod:NAMESPACE/POD", or "net:[INODE]" for an unnamed one. A name or an inode
can come back as another namespace (deleted, then recreated; inodes are
reused at once), so each action compares the namespace's cookie, which the
kernel never reuses, with the one recorded (who.netns_changed); the inode is
recorded too and compared when the kernel has no cookie (before Linux 5.14).
"""

from __future__ import annotations

import re

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

