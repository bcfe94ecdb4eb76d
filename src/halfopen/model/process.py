"""A process that holds sockets, as seen in /proc."""

from __future__ import annotations

from dataclasses import field

from halfopen.records import record


@record
class Process:
    pid: int
    comm: str
    fd_count: int  # every open fd, sockets or not
    socket_inodes: list[int] = field(default_factory=list)
