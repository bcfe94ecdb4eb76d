"""Per-process fd counts and RLIMIT_NOFILE (/proc/PID/fd, /proc/PID/limits)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from ...model.host import UNLIMITED
from ._text import bad, read


def parse_nofile(text: str, name: str = "/proc/PID/limits") -> tuple[int, int]:
    """The "Max open files" soft and hard limits; "unlimited" is UNLIMITED (-1).

    >>> parse_nofile("Limit  Soft Limit  Hard Limit  Units\\n"
    ...              "Max open files            1024                 524288               files\\n")
    (1024, 524288)
    """
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("Max open files"):
            words = line[len("Max open files"):].split()
            if len(words) < 2:
                raise bad(name, lineno, line, "want soft and hard limits")
            out = []
            for w in words[:2]:
                if w == "unlimited":
                    out.append(UNLIMITED)
                elif w.isdigit():
                    out.append(int(w))
                else:
                    raise bad(name, lineno, line, f"not a limit {w!r}")
            return out[0], out[1]
    raise ValueError(f"{name}: no 'Max open files' line")


@dataclass(slots=True)
class FdScan:
    """What /proc/PID/fd showed of one process."""

    pid: int
    comm: str
    netns_inode: int  # inode of /proc/PID/ns/net, 0 if unreadable
    fd_count: int
    socket_fds: dict[int, int] = field(default_factory=dict)  # fd -> socket inode


def scan_fds(proc: str = "/proc", pids: Iterable[int] | None = None) -> tuple[list[FdScan], int]:
    """Every readable process's fds; returns (scans, processes we may not read)."""
    if pids is None:
        pids = [int(n) for n in os.listdir(proc) if n.isdigit()]
    scans: list[FdScan] = []
    denied = 0
    for pid in pids:
        base = f"{proc}/{pid}"
        try:
            dir_fd = os.open(f"{base}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            denied += 1
            continue
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue
        try:
            names = os.listdir(dir_fd)
            socks: dict[int, int] = {}
            for fd in names:
                try:
                    link = os.readlink(fd, dir_fd=dir_fd)
                except OSError:
                    continue
                if link.startswith("socket:["):
                    socks[int(fd)] = int(link[8:-1])
            comm = read(f"{base}/comm").rstrip("\n")
            try:
                ns_inode = os.stat(f"{base}/ns/net").st_ino
            except OSError:
                ns_inode = 0
        except (FileNotFoundError, ProcessLookupError):
            continue
        except PermissionError:
            denied += 1
            continue
        finally:
            os.close(dir_fd)
        scans.append(FdScan(pid, comm, ns_inode, len(names), socks))
    return scans, denied


def read_nofile(pid: int, proc: str = "/proc") -> tuple[int, int]:
    path = f"{proc}/{pid}/limits"
    return parse_nofile(read(path), path)
