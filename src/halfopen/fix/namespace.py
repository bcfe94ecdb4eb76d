"""A finding's "netns" word -> a Namespace to enter.

The doctor labels namespaces as collect.netns.label does: "host", an
`ip netns` name, "pod:NAMESPACE/POD" or "net:[INODE]" for an unnamed one.
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
