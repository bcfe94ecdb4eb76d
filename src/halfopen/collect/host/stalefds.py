"""Socket fds whose inode is in no kernel socket table of any namespace (fd-leak).

A process may hold sockets created in other network namespaces (it called
setns, ran under `ip netns exec` and came back, got an fd passed), and socket
inodes are unique across namespaces: so a fd is stale only when its inode is
in no table of any namespace. The tables are the /proc/PID/net files of a
process in that namespace (no setns needed), or /proc/thread-self/net after
setns for a namespace no process lives in. Each fd's protocol comes from the sockfs xattr
"system.sockprotoname" (net/socket.c sockfs_getxattr); only protocols with a
table listing every socket that has state are checked:

    protocol (sk_prot->name)     table(s)               inode column
    TCP / TCPv6                  tcp / tcp6             10th
    UDP / UDPv6, UDP-Lite(v6)    udp / udp6 ...         10th
    RAW / RAWv6                  raw / raw6             10th
    PING / PINGv6                icmp / icmp6           10th
    UNIX, UNIX-STREAM            unix                   7th
    PACKET                       packet                 9th

TCP and UDP sockets that were never bound or connected are in no table
either; NETLINK is not checked because unbound netlink sockets are not listed.
For each stale fd `hup` tells whether the socket was shut down in both
directions (a reset, SOCK_DESTROY, keepalive giving up, or close of the
connection) — read with poll() on a duplicate from pidfd_getfd(2), which
changes nothing — and None when that could not be checked.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable, Iterable

from ...errors import HalfopenError, NotPermitted
from ...kernel import pidfd
from ...model.host import StaleSocketFd, StaleSocketFds
from ...records import record
from .. import netns as netns_mod
from ..owners import FdScan
from ._text import bad, read, to_int

# protocol name -> (table files, 0-based inode column)
TABLES: dict[str, tuple[tuple[str, ...], int]] = {
    "TCP": (("tcp",), 9), "TCPv6": (("tcp6",), 9),
    "UDP": (("udp",), 9), "UDPv6": (("udp6",), 9),
    "UDP-Lite": (("udplite",), 9), "UDPLITEv6": (("udplite6",), 9),
    "RAW": (("raw",), 9), "RAWv6": (("raw6",), 9),
    "PING": (("icmp",), 9), "PINGv6": (("icmp6",), 9),
    "UNIX": (("unix",), 6), "UNIX-STREAM": (("unix",), 6),
    "PACKET": (("packet",), 8),
}
CHECKED_PROTOCOLS = sorted(TABLES)


def parse_inodes(text: str, column: int, name: str = "/proc/net/tcp") -> set[int]:
    """The inode column of a /proc/net socket table (first line is the header).

    >>> parse_inodes("  sl  local_address ...\\n   0: 0100007F:0CEA 00000000:0000 0A "
    ...              "00000000:00000000 00:00000000 00000000     0        0 4242 1 x 100 0 0 10 0\\n", 9)
    {4242}
    """
    out = set()
    lines = text.splitlines()
    for lineno, line in enumerate(lines[1:], 2):
        words = line.split()
        if not words:
            continue
        if len(words) <= column:
            raise bad(name, lineno, line, f"no column {column + 1}")
        out.add(to_int(name, lineno, line, words[column]))
    return out


def read_inodes(net_dir: str, files: Iterable[str]) -> set[int]:
    """Inodes of every table in `files` under `net_dir` (e.g. /proc/PID/net)."""
    out: set[int] = set()
    for fname in files:
        column = 6 if fname == "unix" else 8 if fname == "packet" else 9
        path = f"{net_dir}/{fname}"
        try:
            text = read(path)
        except FileNotFoundError:  # IPv6 off, protocol not built
            continue
        out |= parse_inodes(text, column, path)
    return out


def protocol(proc: str, pid: int, fd: int) -> str:
    raw = os.getxattr(f"{proc}/{pid}/fd/{fd}", "system.sockprotoname")
    return raw.rstrip(b"\0").decode("ascii", "replace")


_POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)


def shut_down(pid: int, fd: int) -> bool | None:
    """Was the socket shut down both ways (POLLRDHUP|POLLHUP)? None if we cannot look."""
    try:
        with pidfd.opened(pid) as pfd, pidfd.borrowed(pfd, fd) as dup:
            p = select.poll()
            p.register(dup, select.POLLIN | _POLLRDHUP)
            events = p.poll(0)
    except OSError:
        return None
    mask = events[0][1] if events else 0
    return bool(mask & _POLLRDHUP) and bool(mask & select.POLLHUP)


def _readers(namespaces, scans: list[FdScan], proc: str, notes: list[str]):
    """namespace inode -> a function reading table inodes there.

    A namespace with a live member is read through /proc/PID/net (no setns); one
    without (an `ip netns add` namespace can hold sockets and no process) is
    entered with setns and read through /proc/thread-self/net.
    """
    members: dict[int, list[int]] = {}
    for scan in scans:
        if scan.netns_inode:
            members.setdefault(scan.netns_inode, []).append(scan.pid)
    spaces = {ns.inode: ns for ns in namespaces}

    def reader(inode: int):
        def read_tables(files: list[str]) -> set[int] | None:
            for pid in members.get(inode, ()):
                try:
                    return read_inodes(f"{proc}/{pid}/net", files)
                except (ProcessLookupError, PermissionError, FileNotFoundError):
                    continue
            ns = spaces.get(inode)
            if ns is None:
                return None
            try:
                with netns_mod.entered(ns, proc):
                    return read_inodes(f"{proc}/thread-self/net", files)
            except (PermissionError, NotPermitted) as exc:
                notes.append(f"socket tables of network namespace {ns.name} not read: {exc}")
                return None
            except (OSError, HalfopenError):  # the namespace went away meanwhile
                return None
        return read_tables

    return {inode: reader(inode) for inode in set(members) | set(spaces)}


@record
class DumpedTcp:
    """What a socket dump taken *after* the fd scan (collect.take.take) tells the check.

    namespaces: inodes of the namespaces whose every TCP socket was dumped;
    undumped: the scanned fds' inodes the dump did not hold. A socket fd open at
    the scan whose inode the dump did not hold was gone from those namespaces'
    TCP tables, so their tcp/tcp6 files need not be read again, and an inode the
    dump held is in a table: only `undumped` are candidates.
    """

    namespaces: frozenset[int]
    undumped: set[int]


def find_stale(scans: Iterable[FdScan], label, proc: str = "/proc",
               check_hup: bool = True, namespaces=None,
               dumped: DumpedTcp | None = None,
               notes: list[str] | None = None) -> list[StaleSocketFds]:
    """Stale socket fds per process. `label(netns_inode)` names a namespace.

    A process may hold sockets of any namespace (it setns'ed, or got them
    passed), and socket inodes are unique across namespaces, so a candidate
    is stale only when it is in no table of any namespace: `namespaces`
    (default: netns.all_namespaces() when `proc` is the live /proc, else the
    namespaces of the scanned processes).

    dumped: see DumpedTcp.
    """
    scans = [s for s in scans if s.socket_fds]
    notes = notes if notes is not None else []
    dumped_ns = dumped.namespaces if dumped is not None else frozenset()
    undumped = dumped.undumped if dumped is not None else None
    candidates = [(scan, fd, inode) for scan in scans for fd, inode in scan.socket_fds.items()
                  if undumped is None or inode in undumped]
    if not candidates:
        return []
    if namespaces is None:
        namespaces = netns_mod.all_namespaces(proc) if proc == "/proc" else []
    readers = _readers(namespaces, scans, proc, notes)
    by_proto = _by_protocol(candidates, proc)
    if not by_proto:
        return []
    files = sorted({f for name in by_proto for f in TABLES[name][0]})
    known = _known_inodes(readers, files, dumped_ns)
    stale_by_pid: dict[int, tuple[FdScan, list[StaleSocketFd]]] = {}
    for name, group in by_proto.items():
        for scan, fd, inode in group:
            if inode in known or not _still_holds(proc, scan.pid, fd, inode):
                continue
            hup = shut_down(scan.pid, fd) if check_hup else None
            stale_by_pid.setdefault(scan.pid, (scan, []))[1].append(
                StaleSocketFd(fd, inode, name, hup))
    out = []
    for pid in sorted(stale_by_pid):
        scan, stale = stale_by_pid[pid]
        stale.sort(key=lambda f: f.fd)
        out.append(StaleSocketFds(scan.pid, scan.comm, label(scan.netns_inode), stale))
    return out


def _by_protocol(candidates: list[tuple[FdScan, int, int]], proc: str
                 ) -> dict[str, list[tuple[FdScan, int, int]]]:
    """The candidate fds (scan, fd, inode) of each checked protocol; fds closed since
    the scan drop out."""
    by_proto: dict[str, list[tuple[FdScan, int, int]]] = {}
    for scan, fd, inode in candidates:
        try:
            name = protocol(proc, scan.pid, fd)
        except OSError:
            continue
        if name in TABLES:
            by_proto.setdefault(name, []).append((scan, fd, inode))
    return by_proto


def _known_inodes(readers: dict[int, Callable[[list[str]], set[int] | None]], files: list[str],
                  dumped_ns: frozenset[int]) -> set[int]:
    """Every inode in the tables `files` of every namespace (tcp and tcp6 not read again
    where the dump had every TCP socket: DumpedTcp)."""
    tcp_files = {"tcp", "tcp6"}
    known: set[int] = set()
    for ns_inode, read_tables in readers.items():
        wanted = [f for f in files if not (f in tcp_files and ns_inode in dumped_ns)]
        if wanted:
            got = read_tables(wanted)
            if got is not None:
                known |= got
    return known


def _still_holds(proc: str, pid: int, fd: int, inode: int) -> bool:
    """The fd still holds that socket (not closed and reused since the scan)."""
    try:
        return os.stat(f"{proc}/{pid}/fd/{fd}").st_ino == inode
    except OSError:
        return False
