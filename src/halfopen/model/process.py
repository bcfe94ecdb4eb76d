"""A process that holds sockets, as seen in /proc."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Any, Optional

from halfopen.records import record

from .container import Container


@record
class Process:
    pid: int
    comm: str
    fd_count: int  # every open fd, sockets or not
    # the fd scan's array('Q') as it is (collect.owners.SocketFds: no int object a
    # socket), a list when read from JSON; equal when their inodes are
    socket_inodes: Sequence[int] = field(default_factory=list)
    container: Optional[Container] = None  # None: on the host, or not known

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Process):
            return NotImplemented
        return (self.pid, self.comm, self.fd_count, self.container) == \
            (other.pid, other.comm, other.fd_count, other.container) and \
            list(self.socket_inodes) == list(other.socket_inodes)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pid": self.pid, "comm": self.comm, "fd_count": self.fd_count,
                             "socket_inodes": list(self.socket_inodes)}
        if self.container is not None:
            d["container"] = self.container.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Process:
        c = d.get("container")
        return cls(d["pid"], d["comm"], d["fd_count"], list(d.get("socket_inodes", [])),
                   Container.from_dict(c) if c else None)
