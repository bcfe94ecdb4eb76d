"""A process that holds sockets, as seen in /proc."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Any, Optional

from halfopen.records import record

from .container import Container


@record(frozen=True)
class KeepaliveSeen:
    """The keepalive options of some of a process's ESTABLISHED sockets, read from the
    sockets themselves (getsockopt on a pidfd_getfd duplicate: collect.keepalive_sample):
    how many of the sockets read have exactly these."""

    sockets: int
    keepalive: bool  # SO_KEEPALIVE
    idle: int  # TCP_KEEPIDLE, seconds (the namespace's tcp_keepalive_time unless set)
    interval: int  # TCP_KEEPINTVL, seconds
    count: int  # TCP_KEEPCNT
    user_timeout_ms: int = 0  # TCP_USER_TIMEOUT; 0: tcp_retries2 decides

    def to_dict(self) -> dict[str, Any]:
        return {"sockets": self.sockets, "keepalive": self.keepalive, "idle": self.idle,
                "interval": self.interval, "count": self.count,
                "user_timeout_ms": self.user_timeout_ms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeepaliveSeen:
        return cls(d["sockets"], d["keepalive"], d["idle"], d["interval"], d["count"],
                   d.get("user_timeout_ms", 0))


@record
class Process:
    pid: int
    comm: str
    fd_count: int  # every open fd, sockets or not
    # the fd scan's array('Q') as it is (collect.owners.SocketFds: no int object a
    # socket), a list when read from JSON; equal when their inodes are
    socket_inodes: Sequence[int] = field(default_factory=list)
    container: Optional[Container] = None  # None: on the host, or not known
    # a sample of its ESTABLISHED sockets' keepalive, one entry per distinct setting;
    # empty when not read (not root, no such socket, a snapshot from before)
    keepalive: list[KeepaliveSeen] = field(default_factory=list)
    # clock ticks after boot (/proc/PID/stat field 22), read with the comm as its fds
    # were: with the pid, who the process is (model.identity); None: not recorded
    start_time: Optional[int] = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Process):
            return NotImplemented
        return (self.pid, self.comm, self.fd_count, self.container, self.keepalive,
                self.start_time) == (other.pid, other.comm, other.fd_count, other.container,
                                     other.keepalive, other.start_time) and \
            list(self.socket_inodes) == list(other.socket_inodes)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pid": self.pid, "comm": self.comm, "fd_count": self.fd_count,
                             "socket_inodes": list(self.socket_inodes)}
        if self.container is not None:
            d["container"] = self.container.to_dict()
        if self.keepalive:
            d["keepalive"] = [k.to_dict() for k in self.keepalive]
        if self.start_time is not None:
            d["start_time"] = self.start_time
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Process:
        c = d.get("container")
        return cls(d["pid"], d["comm"], d["fd_count"], list(d.get("socket_inodes", [])),
                   Container.from_dict(c) if c else None,
                   [KeepaliveSeen.from_dict(k) for k in d.get("keepalive", [])],
                   d.get("start_time"))
