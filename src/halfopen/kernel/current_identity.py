"""Who a pid and a network namespace are: identities that outlive their numbers.

Pids and namespace inodes are reused: a process is (pid, start time), and a
network namespace is its cookie, a 64-bit counter the kernel never hands out
twice (net/core/net_namespace.c, net->net_cookie; read with
getsockopt(SOL_SOCKET, SO_NETNS_COOKIE) on a socket created inside it,
Linux 5.14+). Every action halfopen takes on a process or a namespace
re-reads these and compares them with what was diagnosed or journaled.
"""

from __future__ import annotations

import socket
import struct
from typing import Optional

from ..model.identity import ProcessIdentity
from .procfs import comm, start_time

SO_NETNS_COOKIE = 71  # include/uapi/asm-generic/socket.h


def process(pid: int, proc: str = "/proc") -> Optional[ProcessIdentity]:
    """The identity of the process now running as `pid`, None if there is none."""
    started = start_time(pid, proc)
    name = comm(pid, proc)
    if started is None or name is None or start_time(pid, proc) != started:
        return None  # gone (or replaced) between the reads
    return ProcessIdentity(pid, started, name)


def differs(pid: int, start: Optional[int], name: Optional[str] = None,
            proc: str = "/proc") -> str:
    """'' when `pid` is still the process recorded as (start, name); else why not.

    A recorded start of None checks only that the pid exists and, when given,
    its comm: callers that act on a findings file (fix.plan) refuse such a pid
    before asking; `halfopen keepalive --pid` reads the start time itself.
    """
    now = process(pid, proc)
    if now is None:
        return f"pid {pid} has exited"
    if start is not None and now.start_time != start:
        return (f"pid {pid} is now another process ({now.comm}, started at tick "
                f"{now.start_time}; the one recorded started at tick {start})")
    if name is not None and now.comm != name:
        return f"pid {pid} is now {now.comm!r}, not {name!r}"
    return ""


def netns_cookie() -> Optional[int]:
    """The cookie of the calling thread's network namespace; None before Linux 5.14.

    Any socket will do: sock_net(sk) is where it was created (net/core/sock.c,
    sk_getsockopt SO_NETNS_COOKIE). An AF_UNIX one needs no network at all.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            raw = s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
        except OSError:  # ENOPROTOOPT: older kernel; identify by inode only
            return None
    return struct.unpack("=Q", raw)[0]
