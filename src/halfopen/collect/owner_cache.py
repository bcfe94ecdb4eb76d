"""Socket owners kept between samples: the exporter's and the watch's fd scan
costs a directory listing per process, not a readlink per fd.

A full scan (owners.scan) reads every fd link of every process: at 100k
sockets half a second, most of it in the kernel (proc_fd_link, d_path). The
cache keeps each process's socket fds (fd -> socket inode, as in owners) and
its other fd numbers, and on each sample:

- a pid not seen before, or whose start time (/proc/PID/stat field 22)
  changed (it exited and the pid was reused), is read in full;
- any other process's fd directory is listed: fds that appeared are read,
  fds that are gone are forgotten, the rest are kept unread;
- the sockets of the dump are matched against the cache (attach). A socket
  with an inode the cache does not know (a new socket on an fd number that
  was reused since the last sample: the listing did not change) sends the
  cache back to the processes whose count of matched sockets dropped (an fd
  of theirs that held a TCP socket may now hold another): their fds are read
  again. Still unknown, a full rescan runs if the last one is at
  least `full_every_s` old; otherwise the socket is reported without owner
  until then (never with a stale one, unless the stale fd's old socket is
  still alive through another fd, until that rescan: docs/metrics.md).

The doctor's scrape reads every link anyway (stale fds, limits): its fd scan
is the cache's full one (full_scan), not a second pass. The inode table is
kept for the cache's life and changed per process (_update_table).

A socket with inode 0 (TIME_WAIT, SYN_RECV, orphans after close(): sock_i_ino
of a socket without a struct socket) has no holder and is not looked up.
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence

from ..kernel import procfs
from ..model.container import Container
from ..model.process import Process
from ..model.socket import Owner, Socket
from ..records import record
from .containers import Resolver
from .inode_table import InodeTable
from .owners import FdScan, HolderArrays, Holders, OwnerMap, SocketFds


@record
class _Cached:
    """One process as last read."""

    start: int  # start time, clock ticks after boot
    comm: str
    sock_fds: array  # 'l': socket fds, in the order read
    sock_inodes: array  # 'Q': their socket inodes, same order
    other_fds: array  # 'l': every other fd
    container: Container | None = None


def _read_start(proc: str, pid: int) -> int | None:
    try:
        return procfs.start_time(pid, proc)
    except OSError:  # not ours to read
        return None


class OwnerCache:
    """owners.scan() kept up to date between samples (see the module docstring)."""

    def __init__(self, proc: str = "/proc", full_every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.proc = proc
        self.full_every_s = full_every_s
        self.clock = clock
        self._procs: dict[int, _Cached] = {}
        self._processes: dict[int, Process] = {}
        self._resolver = Resolver(proc)
        self._full_at: float | None = None
        self._last_hits: dict[int, int] = {}  # pid -> holders matched in the last sample
        self.owner_map: OwnerMap | None = None
        self._table: InodeTable | None = None  # kept for the cache's life (_update_table)
        self._table_of: dict[int, _Cached] = {}  # the records it holds the sockets of
        self.table_changes = 0  # sockets discarded and added by the last build
        self.denied = 0
        # what the last sample cost, for tests and the benchmark
        self.links_read = 0
        self.links_by_pid: dict[int, int] = {}  # pid -> links read, last sample
        self.full_scans = 0
        self.unowned = 0  # sockets with an inode no readable fd holds, last sample

    # -- reading /proc ---------------------------------------------------------

    def _read_process(self, pid: int, dir_fd: int, names: list[str], start: int,
                      old: _Cached | None) -> _Cached | None:
        """Read the links of the fds not in `old` (all of them without `old`)."""
        if old is not None and len(names) == len(old.sock_fds) + len(old.other_fds):
            # the steady state: the same fd numbers as last time. Checked with
            # set operations in C, not a Python step an fd (18,000 fds a worker
            # in bench/scale.py: most of the cache's time)
            now = set(map(int, names))
            if now.issuperset(old.sock_fds) and now.issuperset(old.other_fds):
                comm = procfs.read_comm(pid, self.proc)
                if comm == old.comm:
                    return old
                return _Cached(start, comm, old.sock_fds, old.sock_inodes, old.other_fds,
                               old.container)
        readlink = os.readlink
        known: dict[int, int] = {}
        others = array("l")
        if old is not None:
            known = dict(zip(old.sock_fds, old.sock_inodes))
            kept_others = set(old.other_fds)
        else:
            kept_others = set()
        fds = array("l")
        inodes = array("Q")
        read = 0
        for name in names:
            fd = int(name)
            inode = known.get(fd)
            if inode is None:
                if fd in kept_others:
                    others.append(fd)
                    continue
                try:
                    link = readlink(name, dir_fd=dir_fd)
                except OSError:  # closed between listdir and readlink
                    continue
                read += 1
                if not link.startswith("socket:["):
                    others.append(fd)
                    continue
                inode = int(link[8:-1])
            fds.append(fd)
            inodes.append(inode)
        self.links_read += read
        if read:
            self.links_by_pid[pid] = self.links_by_pid.get(pid, 0) + read
        comm = procfs.read_comm(pid, self.proc)
        container = old.container if old is not None else None
        if fds and (old is None or not old.sock_fds):  # from its first socket on
            container = self._resolver.of_pid(pid)
        return _Cached(start, comm, fds, inodes, others, container)

    def _visit(self, pid: int, reread: bool) -> _Cached | None:
        """The process as it is now; None when it is gone or not ours to read."""
        start = _read_start(self.proc, pid)
        if start is None:
            return None
        old = self._procs.get(pid)
        if old is not None and (old.start != start or reread):
            old = None
        try:
            dir_fd = os.open(f"{self.proc}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            self.denied += 1
            return None
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            return None
        try:
            names = os.listdir(dir_fd)
            cached = self._read_process(pid, dir_fd, names, start, old)
        except (FileNotFoundError, ProcessLookupError):
            return None
        except PermissionError:
            self.denied += 1
            return None
        finally:
            os.close(dir_fd)
        if old is None and _read_start(self.proc, pid) != start:
            return None  # exited while we read it: its fds may be another's
        return cached

    def _reread(self, pids: Iterable[int]) -> None:
        for pid in pids:
            cached = self._visit(pid, reread=True)
            if cached is None:
                self._procs.pop(pid, None)
            else:
                self._procs[pid] = cached

    def refresh(self) -> OwnerMap:
        """Bring the cache up to date with /proc (a full scan the first time or
        when the last one is `full_every_s` old); returns the owner map."""
        self.links_read = 0
        self.links_by_pid = {}
        self.full_scans = 0
        now = self.clock()
        full = self._full_at is None or now - self._full_at >= self.full_every_s
        self._scan(full)
        return self._build()

    def full_scan(self) -> tuple[list[FdScan], int]:
        """A full scan (every link read again, as refresh() does every
        `full_every_s`), in the doctor's terms: owners.scan_fds()'s (scans,
        processes not readable), the sockets' arrays shared, not copied.
        owner_map is then this scan's, every inode unfound (stale fds)."""
        self.links_read = 0
        self.links_by_pid = {}
        self.full_scans = 0
        self._scan(full=True)
        self._build()
        scans = []
        for pid, c in self._procs.items():
            try:
                ns_inode = procfs.ns_inode(pid, self.proc)
            except OSError:
                ns_inode = 0
            scans.append(FdScan(pid, c.comm, ns_inode, len(c.sock_fds) + len(c.other_fds),
                                SocketFds.of(c.sock_fds, c.sock_inodes)))
        return scans, self.denied

    def matched(self, hits: dict[int, int]) -> None:
        """pid -> sockets matched to it by a dump that did not go through
        attach() or recover() (the doctor's, on full_scan's map): the next
        sample's suspects are the pids whose count drops from these."""
        self._last_hits = hits

    def _scan(self, full: bool) -> None:
        self.denied = 0
        if full:
            self.full_scans += 1
            self._full_at = self.clock()
        procs: dict[int, _Cached] = {}
        for pid in procfs.pids(self.proc):
            cached = self._visit(pid, reread=full)
            if cached is not None:
                procs[pid] = cached
        self._procs = procs

    def _build(self) -> OwnerMap:
        procs = self._procs
        self.owner_map = None
        table = self._update_table(procs)
        comms: dict[int, str] = {}
        # One dict for the cache's life, refilled in place: a sample built from
        # an earlier map sees the processes read again while it was matched.
        processes = self._processes
        processes.clear()
        containers: dict[int, Container] = {}
        for pid, c in procs.items():
            comms[pid] = c.comm
            if c.container is not None:
                containers[pid] = c.container
            processes[pid] = Process(pid, c.comm, len(c.sock_fds) + len(c.other_fds),
                                     c.sock_inodes, c.container, start_time=c.start)
        self._table_of = dict(procs)
        self.owner_map = OwnerMap(Holders(table, comms, containers), processes, self.denied)
        return self.owner_map

    def _update_table(self, procs: dict[int, _Cached]) -> InodeTable:
        """The inode table brought to `procs`: the sockets of each process gone
        or changed since the last build discarded, those of each new or
        changed one added (a process whose listing did not change keeps its
        _Cached record, or at least its arrays: nothing to do). Built afresh
        the first time, or when most sockets changed (a build at once is
        about twice as fast an entry as an update). One table for the cache's
        life: never two at once, and a shared host's processes that come and
        go between scrapes cost their own sockets, not the table."""
        table, last = self._table, self._table_of
        if table is not None:
            drops: list[tuple[int, Sequence[int], Sequence[int]]] = []  # pid, fds, inodes
            puts: list[tuple[int, Sequence[int], Sequence[int]]] = []
            for pid, old in last.items():
                c = procs.get(pid)
                if c is None:
                    drops.append((pid, old.sock_fds, old.sock_inodes))
                elif c.sock_inodes is not old.sock_inodes:
                    # only the pairs that changed: a worker of 18,000 sockets
                    # that opened one costs one insert, not 36,000 steps
                    was = set(zip(old.sock_fds, old.sock_inodes))
                    now = set(zip(c.sock_fds, c.sock_inodes))
                    drop, put = was - now, now - was
                    drops.append((pid, [fd for fd, _i in drop], [i for _fd, i in drop]))
                    puts.append((pid, [fd for fd, _i in put], [i for _fd, i in put]))
            for pid, c in procs.items():
                if pid not in last:
                    puts.append((pid, c.sock_fds, c.sock_inodes))
            self.table_changes = sum(len(fds) for _pid, fds, _i in drops + puts)
            if 2 * self.table_changes > len(table):
                table = None  # most of it changed: build it at once
            else:
                for pid, fds, inodes in drops:
                    table.discard(pid, fds, inodes)
                for pid, fds, inodes in puts:
                    table.add(pid, fds, inodes)
                table.reset_found()
        if table is None:
            self._table = None  # the last table goes before the next is built
            self.table_changes = sum(len(c.sock_inodes) for c in procs.values())
            held = HolderArrays()
            for pid, c in procs.items():
                held.add(pid, c.sock_fds, c.sock_inodes)
            table = held.table()
        self._table = table
        return table

    # -- matching a dump ----------------------------------------------------

    def attach(self, sockets: Iterable[Socket]) -> Iterator[Socket]:
        """Set each socket's owners from the cache, as refresh() left it. Sockets
        it does not know are held back, looked for (see the module docstring)
        and yielded last; the Processes of owner_map follow what was read."""
        if self.owner_map is None:
            self.refresh()
        assert self.owner_map is not None
        owners_of = self.owner_map.owners.getter()
        hits: dict[int, int] = {}
        missed: list[Socket] = []
        self.unowned = 0
        for s in sockets:
            if s.inode:
                found = owners_of(s.inode)
                if not found:
                    missed.append(s)
                    continue
                s.owners = found
                for o in found:
                    hits[o.pid] = hits.get(o.pid, 0) + 1
            yield s
        if missed:
            got = self.recover([s.inode for s in missed], hits)
            for s in missed:  # found ones with their owners, the rest without
                s.owners = got.get(s.inode, ())
            yield from missed
        else:
            self.recover([], hits)

    def recover(self, inodes: list[int], hits: dict[int, int]) -> dict[int, tuple[Owner, ...]]:
        """Owners of the dumped inodes the map did not know (see the module
        docstring): inode -> owners, for those found. `hits` (pid -> holders
        matched in this sample) picks the processes to read again; what is found
        is added to it, and it is kept for the next sample. attach() ends with
        this; collect.state_tally, which probes the table itself, calls it."""
        found: dict[int, tuple[Owner, ...]] = {}
        unknown = inodes
        if unknown:
            suspects = [pid for pid, n in self._last_hits.items() if hits.get(pid, 0) < n]
            if suspects:
                self._reread(suspects)
                unknown = self._match(unknown, hits, found)
            if unknown and (self._full_at is None
                            or self.clock() - self._full_at >= self.full_every_s):
                self._scan(full=True)
                unknown = self._match(unknown, hits, found)
        self.unowned = len(unknown)
        self._last_hits = hits
        return found

    def _match(self, inodes: list[int], hits: dict[int, int],
               found: dict[int, tuple[Owner, ...]]) -> list[int]:
        """Look the inodes up again after a re-read; returns those still unknown."""
        owners_of = self._build().owners.getter()
        still: list[int] = []
        for inode in inodes:
            owners = owners_of(inode)
            if owners:
                found[inode] = owners
                for o in owners:
                    hits[o.pid] = hits.get(o.pid, 0) + 1
            else:
                still.append(inode)
        return still
