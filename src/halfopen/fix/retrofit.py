"""Keepalive onto a running process's TCP sockets, with no restart.

For each socket fd of the process that the filter matches: take our own
duplicate (pidfd_getfd), check it is the same socket (inode) and TCP, read
the options, set the wanted ones, read them back, close the duplicate. With
`release`, CLOSE_WAIT sockets get shutdown(SHUT_WR) instead: our FIN goes
out, but the fd remains the application's to close.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from halfopen.records import record

from ..collect import netns, owners
from ..collect import sockets as collector
from ..errors import NotPermitted, UsageError
from ..kernel import current_identity, sockopt
from ..kernel.sockopt import Keepalive
from ..model.filter import Filter
from ..model.socket import Socket
from ..model.states import TcpState
from . import borrowed_fds
from .failures import AccessDenied, ProcessGone

# TIME_WAIT and SYN_RECV have no fd; LAST_ACK and later are already closing.
_HELD_STATES = {TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.LISTEN,
                TcpState.SYN_SENT, TcpState.FIN_WAIT1, TcpState.FIN_WAIT2}


@record(frozen=True)
class Settings:
    idle: int
    interval: int
    count: int
    user_timeout_ms: int | None = None  # None: leave as it is

    def check(self) -> None:
        """UsageError naming the bad value; nothing is touched before this passes."""
        for name, value, top in (("--idle", self.idle, sockopt.MAX_KEEPIDLE),
                                 ("--interval", self.interval, sockopt.MAX_KEEPINTVL),
                                 ("--count", self.count, sockopt.MAX_KEEPCNT)):
            if not 1 <= value <= top:
                raise UsageError(f"bad {name} {value}: 1..{top}")
        if self.user_timeout_ms is not None and not 0 <= self.user_timeout_ms <= 2**31 - 1:
            raise UsageError(f"bad --user-timeout {self.user_timeout_ms}: 0..2147483647 ms")

    def wanted(self, before: Keepalive) -> Keepalive:
        ut = before.user_timeout_ms if self.user_timeout_ms is None else self.user_timeout_ms
        return Keepalive(True, self.idle, self.interval, self.count, ut)


@record
class SocketResult:
    fd: int
    sock: Socket
    result: str  # would set | set | already set | would release | released | skipped | failed
    before: Keepalive | None = None
    after: Keepalive | None = None
    note: str = ""

    def to_dict(self) -> dict:
        d = {"fd": self.fd, "result": self.result, "socket": self.sock.to_dict()}
        d["before"] = self.before.to_dict() if self.before else None
        d["after"] = self.after.to_dict() if self.after else None
        if self.note:
            d["note"] = self.note
        return d


def check_pid(pid: int, proc: str = "/proc") -> None:
    if pid <= 0:
        raise UsageError(f"bad pid {pid}: a positive process id")
    if not os.path.exists(f"{proc}/{pid}"):
        raise UsageError(f"no process with pid {pid}")


def find_sockets(pid: int, flt: Filter, proc: str = "/proc") -> list[tuple[int, Socket]]:
    """(fd, socket) for each TCP socket of `pid` in its namespace that `flt` matches."""
    held = owners.scan(proc, [pid])
    if pid not in held.processes:
        raise _denied_fds(pid) if held.denied else ProcessGone(pid)
    try:
        space = netns.of_pid(pid, proc)
    except NotPermitted:
        raise _denied_fds(pid) from None
    query = collector.Query(filter=flt, owners=flt.needs_owners, namespaces=(space,),
                            source="sock_diag", proc=proc)
    found = []
    for sock in collector.collect(query).sockets:
        fds = [o.fd for o in held.owners.get(sock.inode, ()) if o.pid == pid]
        if fds and sock.inode and sock.state in _HELD_STATES:
            sock.owners = held.owners.get(sock.inode, ())
            found.append((fds[0], sock))
    return sorted(found, key=lambda item: item[0])


def _denied_fds(pid: int) -> Exception:
    return AccessDenied(f"may not read /proc/{pid}/fd or ns/net (EACCES): another process's fds need "
                        "ptrace access (PTRACE_MODE_READ: same uid and dumpable, or "
                        "CAP_SYS_PTRACE)")


@contextlib.contextmanager
def borrowed_socket(pfd: int, pid: int, fd: int) -> Iterator[socket.socket]:
    dup = borrowed_fds.pidfd_getfd(pfd, pid, fd)
    try:
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        raise
    with sock:
        yield sock


def retrofit(pid: int, targets: list[tuple[int, Socket]], settings: Settings, *,
             apply: bool, release: bool = False, start: int | None = None,
             before_set: Callable[[SocketResult], Any] | None = None,
             after_set: Callable[[Any], Any] | None = None) -> list[SocketResult]:
    """Plan (apply=False) or set keepalive on each target; one result per socket.

    start: the process's recorded start time. It is compared after the pidfd
    is open, so a match means the pidfd is that process (a pidfd never moves
    to a later process reusing the pid): each socket is then skipped if the
    pid now names another process. before_set(result) runs before each change
    (the journal's intent), after_set(its return) after it.
    ProcessGone / AccessDenied / NotSupported end the whole run: they hold for
    every socket of the process.
    """
    results = []
    with borrowed_fds.opened(pid) as pfd:
        if start is not None:
            why = current_identity.differs(pid, start)
            if why:
                return [SocketResult(fd, sock, "skipped", note=why) for fd, sock in targets]
        for fd, sock in targets:
            results.append(_one(pfd, pid, fd, sock, settings, apply, release,
                                before_set, after_set))
    return results


def _one(pfd: int, pid: int, fd: int, sock: Socket, settings: Settings,
         apply: bool, release: bool, before_set: Callable[[SocketResult], Any] | None = None,
         after_set: Callable[[Any], Any] | None = None) -> SocketResult:
    try:
        with borrowed_socket(pfd, pid, fd) as s:
            if os.fstat(s.fileno()).st_ino != sock.inode:
                return SocketResult(fd, sock, "skipped", note="fd now holds another file")
            other = sockopt.tcp_kind(s)
            if other is not None:
                return SocketResult(fd, sock, "skipped", note=f"not a TCP socket ({other})")
            before = sockopt.read(s)
            if release and sock.state == TcpState.CLOSE_WAIT:
                if not apply:
                    return SocketResult(fd, sock, "would release", before, before)
                sockopt.release(s)
                return SocketResult(fd, sock, "released", before, sockopt.read(s),
                                    note="FIN sent; the fd stays open until the "
                                         "application closes it")
            wanted = settings.wanted(before)
            if wanted == before:
                return SocketResult(fd, sock, "already set", before, before)
            if not apply:
                return SocketResult(fd, sock, "would set", before, wanted)
            token = before_set(SocketResult(fd, sock, "set", before, wanted)) \
                if before_set else None
            after = sockopt.write(s, wanted)
            if after_set is not None:
                after_set(token)
            if after != wanted:
                return SocketResult(fd, sock, "failed", before, after,
                                    note="the kernel reports other values than were set")
            return SocketResult(fd, sock, "set", before, after)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            return SocketResult(fd, sock, "skipped", note="the process closed it meanwhile")
        if exc.errno == errno.ENOTSOCK:
            return SocketResult(fd, sock, "skipped", note="fd is no longer a socket")
        return SocketResult(fd, sock, "failed", note=f"{errno.errorcode.get(exc.errno or 0, exc.errno)}: "
                                                     f"{exc.strerror}")


def restore(pid: int, fd: int, inode: int, old: Keepalive, start: int | None = None) -> str:
    """Put back the options a retrofit changed; the outcome in a few words."""
    with borrowed_fds.opened(pid) as pfd:
        if start is not None and current_identity.differs(pid, start):
            raise ProcessGone(pid, current_identity.differs(pid, start))
        try:
            with borrowed_socket(pfd, pid, fd) as s:
                if os.fstat(s.fileno()).st_ino != inode:
                    return "socket gone (fd reused)"
                if sockopt.read(s) == old:
                    return "already set"
                sockopt.write(s, old)
                return "restored"
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                return "socket gone (fd closed)"
            raise
