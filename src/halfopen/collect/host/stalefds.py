"""Socket fds whose inode is in no kernel socket table of its namespace (fd-leak).

The tables are the /proc/PID/net files of a process in that namespace (so no
setns is needed). Each fd's protocol comes from the sockfs xattr
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

import ctypes
import os
import select
from collections.abc import Iterable

from ...model.host import StaleSocketFd, StaleSocketFds
from ._text import bad, read, to_int
from .limits import FdScan

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


_SYS_PIDFD_GETFD = 438  # include/uapi/asm-generic/unistd.h, same number on all arches
_libc = ctypes.CDLL(None, use_errno=True)
_POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)


def shut_down(pid: int, fd: int) -> bool | None:
    """Was the socket shut down both ways (POLLRDHUP|POLLHUP)? None if we cannot look."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        dup = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if dup < 0:
            return None
        try:
            p = select.poll()
            p.register(dup, select.POLLIN | _POLLRDHUP)
            events = p.poll(0)
            mask = events[0][1] if events else 0
            return bool(mask & _POLLRDHUP) and bool(mask & select.POLLHUP)
        finally:
            os.close(dup)
    finally:
        os.close(pidfd)


def find_stale(scans: Iterable[FdScan], label, proc: str = "/proc",
               check_hup: bool = True) -> list[StaleSocketFds]:
    """Stale socket fds per process. `label(netns_inode)` names a namespace."""
    by_ns: dict[int, list[FdScan]] = {}
    for scan in scans:
        if scan.socket_fds and scan.netns_inode:
            by_ns.setdefault(scan.netns_inode, []).append(scan)
    out: list[StaleSocketFds] = []
    for ns_inode, group in by_ns.items():
        # which protocols appear, per fd
        protos: dict[tuple[int, int], str] = {}
        for scan in group:
            for fd in scan.socket_fds:
                try:
                    protos[(scan.pid, fd)] = protocol(proc, scan.pid, fd)
                except OSError:
                    continue
        wanted = {f for name in set(protos.values()) if name in TABLES for f in TABLES[name][0]}
        if not wanted:
            continue
        known: set[int] | None = None
        for scan in group:  # any live member of the namespace can show its tables
            try:
                known = read_inodes(f"{proc}/{scan.pid}/net", sorted(wanted))
                break
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                continue
        if known is None:
            continue
        for scan in group:
            stale = []
            for fd, inode in sorted(scan.socket_fds.items()):
                name = protos.get((scan.pid, fd))
                if name in TABLES and inode not in known:
                    hup = shut_down(scan.pid, fd) if check_hup else None
                    stale.append(StaleSocketFd(fd, inode, name, hup))
            if stale:
                out.append(StaleSocketFds(scan.pid, scan.comm, label(ns_inode), stale))
    return out
