"""Which processes hold which sockets: inode -> (pid, comm, fd) from /proc/*/fd.

A socket fd's link reads "socket:[INODE]" (fs/proc/fd.c, sockfs_dname).
Socket inodes are unique across network namespaces, so one scan serves all.
Processes that exit mid-scan are skipped; unreadable ones are counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..model.process import Process
from ..model.socket import Owner


@dataclass(slots=True)
class OwnerMap:
    owners: dict[int, tuple[Owner, ...]]  # socket inode -> holders
    processes: dict[int, Process]
    denied: int  # processes whose fds we may not read (not root)


def read_comm(proc: str, pid: int) -> str:
    with open(f"{proc}/{pid}/comm", "rb") as f:
        return f.read().rstrip(b"\n").decode("utf-8", "replace")


def all_pids(proc: str = "/proc") -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


def scan(proc: str = "/proc", pids: Iterable[int] | None = None) -> OwnerMap:
    """Map socket inodes to their holders; restrict to `pids` when given."""
    owners: dict[int, list[Owner]] = {}
    processes: dict[int, Process] = {}
    denied = 0
    readlink = os.readlink
    for pid in (all_pids(proc) if pids is None else pids):
        try:
            dir_fd = os.open(f"{proc}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            denied += 1
            continue
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue  # gone, or a kernel thread's empty entry
        try:
            comm = read_comm(proc, pid)
            names = os.listdir(dir_fd)
            inodes: list[int] = []
            for name in names:
                try:
                    link = readlink(name, dir_fd=dir_fd)
                except OSError:  # fd closed between listdir and readlink
                    continue
                if link.startswith("socket:["):
                    inode = int(link[8:-1])
                    inodes.append(inode)
                    owner = Owner(pid, comm, int(name))
                    holders = owners.get(inode)
                    if holders is None:
                        owners[inode] = [owner]
                    else:
                        holders.append(owner)
        except (FileNotFoundError, ProcessLookupError):
            continue
        except PermissionError:
            denied += 1
            continue
        finally:
            os.close(dir_fd)
        processes[pid] = Process(pid, comm, len(names), inodes)
    return OwnerMap({k: tuple(v) for k, v in owners.items()}, processes, denied)
