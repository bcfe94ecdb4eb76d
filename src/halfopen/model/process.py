"""A process that holds sockets, as seen in /proc."""

from __future__ import annotations

from dataclasses import field
from typing import Any, Optional

from halfopen.records import record

from .container import Container


@record
class Process:
    pid: int
    comm: str
    fd_count: int  # every open fd, sockets or not
    socket_inodes: list[int] = field(default_factory=list)
    container: Optional[Container] = None  # None: on the host, or not known

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pid": self.pid, "comm": self.comm, "fd_count": self.fd_count,
                             "socket_inodes": self.socket_inodes}
        if self.container is not None:
            d["container"] = self.container.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Process:
        c = d.get("container")
        return cls(d["pid"], d["comm"], d["fd_count"], list(d.get("socket_inodes", [])),
                   Container.from_dict(c) if c else None)
