"""Who a process and a network namespace are, as recorded: identities that outlive their numbers.

Pids and namespace inodes are reused: a process is (pid, start time), a
network namespace its cookie (net/core/net_namespace.c, net->net_cookie,
never handed out twice), else its nsfs inode. kernel.current_identity reads them
now; a finding's subject records them as the collector read them
(diagnose.common.identify), and
fix compares the two before any change.

    >>> subject = Subject("blue", 812, "nginx", start_time=98123, netns_inode=4026532000,
    ...                   netns_cookie=7)
    >>> recorded_process(subject, 812)
    ProcessIdentity(pid=812, start_time=98123, comm='nginx')
    >>> recorded_process(subject, 813)
    ProcessIdentity(pid=813, start_time=None, comm=None)
    >>> recorded_netns(subject, "blue")
    NetnsIdentity(name='blue', inode=4026532000, cookie=7)
    >>> recorded_netns(subject, "host").recorded
    False
"""

from __future__ import annotations

from typing import Optional

from halfopen.records import record

from .host import HOST
from .subject import Subject


@record(frozen=True)
class ProcessIdentity:
    pid: int
    start_time: Optional[int] = None  # clock ticks after boot, /proc/PID/stat field 22; None: not recorded
    comm: Optional[str] = None  # None: not recorded

    def text(self) -> str:
        return f"pid {self.pid} ({self.comm}, started at tick {self.start_time})"


@record(frozen=True)
class NetnsIdentity:
    name: str  # "host", an ip-netns name, "pod:NS/POD" or "net:[INODE]"
    inode: Optional[int] = None  # nsfs inode; None: not recorded
    cookie: Optional[int] = None  # SO_NETNS_COOKIE (Linux 5.14+); None: not recorded

    @property
    def recorded(self) -> bool:
        """True when there is something to compare with the namespace now under the name."""
        return self.inode is not None or self.cookie is not None


def recorded_process(subject: Subject, pid: int) -> ProcessIdentity:
    """The identity a finding's subject recorded for `pid`; only the pid when it is
    about another process or recorded no start time (an older findings file)."""
    if subject.pid != pid or subject.start_time is None:
        return ProcessIdentity(pid)
    return ProcessIdentity(pid, subject.start_time, subject.comm)


def recorded_netns(subject: Subject, name: str) -> NetnsIdentity:
    """The identity a finding's subject recorded for namespace `name`; only the
    name when the finding is about another one or recorded neither number."""
    if (subject.netns or HOST) != name:
        return NetnsIdentity(name)
    return NetnsIdentity(name, subject.netns_inode, subject.netns_cookie)
