"""What keepalive each process really set on its connections, read from the sockets.

sock_diag shows whether a keepalive timer runs, not the TCP_KEEPIDLE,
TCP_KEEPINTVL and TCP_KEEPCNT behind it: libraries and servers set them per
socket (redis's `tcp-keepalive`, redis-py's socket_keepalive_options, Go's
net.Dialer with 15 s, PostgreSQL clients, gRPC), and the namespace's
net.ipv4.tcp_keepalive_* sysctls are only what a socket that set nothing gets.
The doctor's cures must be computed from what the sockets do
(diagnose.keepalive_target), so as root it reads them:

- which sockets: while the dump streams, a few ESTABLISHED sockets with an
  owner and a peer on another host per process (`PER_PROCESS`), at most
  `PROCESSES` processes: the sockets dead-peer, keepalive-off and
  timeout-mismatch are about; a bounded sample, not the table;
- how: pidfd_open, then pidfd_getfd on the owner's fd, and getsockopt on our
  duplicate, which is closed at once (read-only: nothing is set; the owner's
  fd stays as it was);
- identity: the duplicate must be the very socket the dump saw (fstat's inode
  is the dump's idiag_inode): an fd closed and reused meanwhile, or a pid that
  now belongs to another process, is skipped, never misread.

Failures (not root, ptrace refused, a process that exited, a kernel before
5.6) leave the process's sample empty; the rules then fall back to the
namespace's sysctls and say so.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
from collections import Counter
from collections.abc import Callable

from ..kernel import pidfd, sockopt
from ..model.process import KeepaliveSeen
from ..model.snapshot import Snapshot
from ..model.socket import Socket
from ..model.states import TcpState

PER_PROCESS = 8  # sockets read per process
PROCESSES = 512  # processes sampled per run: a bound on the syscalls, whatever the host
ESTABLISHED = int(TcpState.ESTABLISHED)
# what makes a sample empty rather than an error: no permission, gone, no pidfd
_EXPECTED = {errno.EPERM, errno.EACCES, errno.ESRCH, errno.EBADF, errno.ENOSYS,
             errno.EOPNOTSUPP, errno.ENOTSOCK, errno.EINVAL}


# A process's peers are a few addresses, and one whose peers are all local never fills
# its sample, so every one of its sockets asks again: parsing each was a tenth of the
# doctor's time at 100k loopback connections.
@functools.lru_cache(maxsize=4096)
def _remote(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return not (mapped or ip).is_loopback


class Picker:
    """Chooses the sockets to read as the dump streams; `wrap(sink)` sees every socket."""

    def __init__(self, per_process: int = PER_PROCESS, processes: int = PROCESSES) -> None:
        self.per_process = per_process
        self.processes = processes
        self.picked: dict[int, list[tuple[int, int]]] = {}  # pid -> [(fd, inode)]

    def add(self, s: Socket) -> None:
        if s.state != ESTABLISHED or not s.owners:
            return
        pid, _comm, fd = s.owners[0][:3]
        fds = self.picked.get(pid)
        if fds is None:
            if len(self.picked) >= self.processes or not _remote(s.peer_addr):
                return
            fds = self.picked[pid] = []
        if len(fds) < self.per_process and _remote(s.peer_addr):
            fds.append((fd, s.inode))

    def wrap(self, sink: Callable[[Socket], None] | None) -> Callable[[Socket], None]:
        if sink is None:
            return self.add

        def both(s: Socket) -> None:
            self.add(s)
            sink(s)
        return both


def read_process(pid: int, picks: list[tuple[int, int]]) -> list[KeepaliveSeen]:
    """The keepalive of the picked sockets of `pid`, one entry per distinct setting."""
    seen: Counter[sockopt.Keepalive] = Counter()
    try:
        pfd = pidfd.pidfd_open(pid)
    except OSError as exc:
        if exc.errno in _EXPECTED:
            return []
        raise
    with pidfd.closing_fd(pfd):
        for fd, inode in picks:
            try:
                dup = pidfd.pidfd_getfd(pfd, fd)
            except OSError as exc:
                if exc.errno in _EXPECTED:
                    continue
                raise
            # socket(fileno=) owns our duplicate from here: closed with it
            if os.fstat(dup).st_ino != inode:
                os.close(dup)  # the fd now holds something else: not the dumped socket
                continue
            with socket.socket(fileno=dup) as sock:
                if sockopt.tcp_kind(sock) is None:
                    seen[sockopt.read(sock)] += 1
    return [KeepaliveSeen(n, k.keepalive, k.idle, k.interval, k.count, k.user_timeout_ms)
            for k, n in seen.most_common()]


def read_into(snap: Snapshot, picker: Picker) -> None:
    """Each picked process's sample onto its Process (snap.processes)."""
    for pid, picks in picker.picked.items():
        proc = snap.processes.get(pid)
        if proc is not None and picks:
            proc.keepalive = read_process(pid, picks)
