"""Which processes hold which sockets: inode -> (pid, comm, fd) from /proc/*/fd.

A socket fd's link reads "socket:[INODE]" (fs/proc/fd.c, sockfs_dname).
Socket inodes are unique across network namespaces, so one scan serves all.
Processes that exit mid-scan are skipped; unreadable ones are counted.
Each process holding sockets gets its container (collect.containers).
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import field

from halfopen.records import record

from ..kernel import procfs
from ..model.container import Container
from ..model.process import Process
from ..model.socket import Owner
from .containers import Resolver
from .inode_table import InodeTable


class Holders(Mapping[int, tuple[Owner, ...]]):
    """socket inode -> its holders, in an InodeTable (collect.inode_table: one
    pid << 32 | fd per holder, 32 bytes a socket); Owner tuples are made on
    lookup, since most are read once, to print them or count them.
    """

    __slots__ = ("_table", "_comms", "_containers", "_lookup")

    def __init__(self, table: InodeTable, comms: dict[int, str],
                 containers: dict[int, Container] | None = None) -> None:
        self._table = table
        self._comms = comms
        self._containers = containers or {}  # pid -> container, for those in one
        self._lookup = self.getter()  # get()'s, built once

    def __getitem__(self, inode: int) -> tuple[Owner, ...]:
        found = self.get(inode)
        if not found:
            raise KeyError(inode)
        return found

    def get(self, inode: int, default: tuple[Owner, ...] = ()) -> tuple[Owner, ...]:  # type: ignore[override]
        return self._lookup(inode) or default

    def getter(self) -> Callable[[int], tuple[Owner, ...]]:
        """get(inode, ()) as a closure over the tables: the per-socket call of
        a listing, without a method call and three attribute lookups each.
        A lookup marks the inode found (InodeTable.unfound)."""
        holders_of = self._table.holders
        comms = self._comms
        box = self._containers.get
        new = tuple.__new__

        def owners_of(inode: int) -> tuple[Owner, ...]:
            held = holders_of(inode)
            if not held:
                return ()
            if len(held) == 1:
                v = held[0]
                pid = v >> 32
                return (new(Owner, (pid, comms[pid], v & 0xFFFFFFFF, box(pid))),)
            return tuple(Owner(v >> 32, comms[v >> 32], v & 0xFFFFFFFF, box(v >> 32))
                         for v in held)

        return owners_of

    @property
    def table(self) -> InodeTable:
        """The raw table (holders as pid << 32 | fd), for a loop that probes it
        inline (collect.state_tally)."""
        return self._table

    def comm(self, pid: int) -> str:
        return self._comms.get(pid, "")

    def unfound(self) -> Iterator[int]:
        """The inodes no getter has looked up (see InodeTable)."""
        return self._table.unfound()

    def __iter__(self) -> Iterator[int]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, inode: object) -> bool:
        return isinstance(inode, int) and bool(self._table.holders(inode))


class HolderArrays:
    """Each process's (fd, socket inode) pairs gathered as the scan reads them,
    for one InodeTable at the end (its size is known only then)."""

    __slots__ = ("inodes", "holders")

    def __init__(self) -> None:
        self.inodes = array("Q")
        self.holders = array("Q")

    def add(self, pid: int, fds: Iterable[int], inodes: array) -> None:
        high = pid << 32
        self.inodes.extend(inodes)
        self.holders.extend([high | fd for fd in fds])

    def table(self) -> InodeTable:
        return InodeTable(self.inodes, self.holders)


@record
class OwnerMap:
    owners: Holders  # socket inode -> holders
    processes: dict[int, Process]
    denied: int  # processes whose fds we may not read (not root)


def denied_note(denied: int) -> str:
    return f"not root: owners of {denied} other users' processes are not shown"


class SocketFds:
    """One process's socket fds and their inodes, as two arrays (in the order
    /proc/PID/fd lists them: ascending, fs/proc/fd.c proc_readfd_common).

    12 bytes a socket where a dict of ints took about 100: the doctor keeps
    every process's table from the fd scan to the stale-fd check after the
    dump, 12 MiB at a million sockets instead of 100.
    """

    __slots__ = ("fds", "inodes")

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        self.fds = array("i")  # an fd is an int (include/linux/fdtable.h)
        self.inodes = array("Q")  # i_ino: unsigned long
        for fd, inode in pairs:
            self.add(fd, inode)

    @classmethod
    def of(cls, fds: array, inodes: array) -> SocketFds:
        """The two arrays as they are, not copied (the owner cache's)."""
        out = cls()
        out.fds, out.inodes = fds, inodes
        return out

    def add(self, fd: int, inode: int) -> None:
        self.fds.append(fd)
        self.inodes.append(inode)

    def items(self) -> Iterator[tuple[int, int]]:
        return zip(self.fds, self.inodes)

    def __len__(self) -> int:
        return len(self.fds)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SocketFds) and self.fds == other.fds and \
            self.inodes == other.inodes

    def __repr__(self) -> str:
        return f"SocketFds({dict(self.items())!r})"


@record
class FdScan:
    """What /proc/PID/fd showed of one process."""

    pid: int
    comm: str
    netns_inode: int  # inode of /proc/PID/ns/net, 0 if unreadable
    fd_count: int
    socket_fds: SocketFds = field(default_factory=SocketFds)
    start_time: int | None = None  # /proc/PID/stat field 22, read with the comm


def scan_fds(proc: str = "/proc", pids: Iterable[int] | None = None) -> tuple[list[FdScan], int]:
    """Every readable process's socket fds; returns (scans, processes we may not read).

    The one reader of /proc/*/fd: `sockets -p` maps its result to owners, the
    doctor also takes fd counts and stale fds from the same pass.
    """
    denied: list[int] = [0]
    scans = list(_each_process(proc, pids, denied))
    return scans, denied[0]


def _each_process(proc: str, pids: Iterable[int] | None,
                  denied: list[int]) -> Iterator[FdScan]:
    """The FdScan of each readable
    process, one at a time; denied[0] counts the processes we may not read."""
    readlink = os.readlink
    for pid in (procfs.pids(proc) if pids is None else pids):
        try:
            dir_fd = os.open(f"{proc}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            denied[0] += 1
            continue
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue  # gone, or a kernel thread's empty entry
        try:
            names = os.listdir(dir_fd)
            socks = SocketFds()
            # SocketFds.add inlined: one Python call less for each of 100k fds
            add_fd, add_inode = socks.fds.append, socks.inodes.append
            for name in names:
                try:
                    link = readlink(name, dir_fd=dir_fd)
                except OSError:  # fd closed between listdir and readlink
                    continue
                if link.startswith("socket:["):
                    add_fd(int(name))
                    add_inode(int(link[8:-1]))
            comm, started = procfs.read_stat(pid, proc)
            try:
                ns_inode = procfs.ns_inode(pid, proc)
            except OSError:
                ns_inode = 0
        except (FileNotFoundError, ProcessLookupError):
            continue
        except PermissionError:
            denied[0] += 1
            continue
        finally:
            os.close(dir_fd)
        yield FdScan(pid, comm, ns_inode, len(names), socks, started)


def scan(proc: str = "/proc", pids: Iterable[int] | None = None) -> OwnerMap:
    """Map socket inodes to their holders; restrict to `pids` when given.

    Folds each process into the map as it is read, so no process's fd table
    is kept beside the map (at a million sockets that copy was 100 MiB).
    """
    denied: list[int] = [0]
    owner_map = from_scans(_each_process(proc, pids, denied), proc=proc)
    owner_map.denied = denied[0]
    return owner_map


def from_scans(scans: Iterable, denied: int = 0, proc: str = "/proc",
               resolver: Resolver | None = None) -> OwnerMap:
    """The OwnerMap of fd scans already made: the doctor reads every
    process's fds once for owners, limits and stale fds.
    """
    held = HolderArrays()
    comms: dict[int, str] = {}
    processes: dict[int, Process] = {}
    containers: dict[int, Container] = {}
    resolver = resolver or Resolver(proc)
    for scan in scans:
        pid = scan.pid
        held.add(pid, scan.socket_fds.fds, scan.socket_fds.inodes)
        comms[pid] = scan.comm
        # Only socket holders: the container names an owner; a process
        # without sockets is never one (and a host has many of them).
        box = resolver.of_pid(pid) if scan.socket_fds else None
        if box is not None:
            containers[pid] = box
        processes[pid] = Process(pid, scan.comm, scan.fd_count, scan.socket_fds.inodes, box,
                                 start_time=scan.start_time)
    return OwnerMap(Holders(held.table(), comms, containers), processes, denied)
