"""The per-process files of /proc, and the two host facts read with them.

The one reader of the pid list, /proc/PID/comm, the start time in
/proc/PID/stat, /proc/PID/status, /proc/PID/cgroup and /proc/PID/ns/*, of
btime in /proc/stat and of fs.nr_open. Policy-free: a missing process raises
FileNotFoundError or ProcessLookupError (or returns None where said), and the
callers decide what that means. `proc` is the root, so a recorded tree works.

    >>> parse_start_time(b"4712 (a b) c) S 1 4712 4712 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98123 0")
    98123
    >>> parse_btime("cpu 1 2 3\\nbtime 1795289080\\n")
    1795289080
    >>> parse_status("Name:\\tnginx\\nPPid:\\t1\\nUid:\\t33\\t33\\t33\\t33\\n")["Uid"]
    '33\\t33\\t33\\t33'
"""

from __future__ import annotations

import os
from typing import Optional

CLK_TCK = os.sysconf("SC_CLK_TCK")  # the unit of /proc/PID/stat's starttime


def pids(proc: str = "/proc") -> list[int]:
    """Every pid now in `proc` (its numeric entries; threads are not listed)."""
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


def read_comm(pid: int, proc: str = "/proc") -> str:
    """The task name (TASK_COMM_LEN, 16 bytes at most); raises if `pid` is gone.

    As the process set it: the kernel adds one newline (proc_task_name), and
    only that one is dropped (a name may end in newlines of its own). Bytes
    that are not UTF-8 read as U+FFFD; showing it is model.text.shown()'s job.
    """
    with open(f"{proc}/{pid}/comm", "rb") as f:
        data = f.read()
    return (data[:-1] if data.endswith(b"\n") else data).decode("utf-8", "replace")


def comm(pid: int, proc: str = "/proc") -> Optional[str]:
    """As read_comm, None when no such process exists."""
    try:
        return read_comm(pid, proc)
    except (FileNotFoundError, ProcessLookupError):
        return None


def parse_start_time(stat: bytes) -> int:
    """Field 22 of /proc/PID/stat (starttime, clock ticks after boot).

    Counted after the last ')': the comm may itself hold spaces and ')'
    (fs/proc/array.c do_task_stat prints it raw).
    """
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def read_stat(pid: int, proc: str = "/proc") -> tuple[str, int]:
    """(comm, start time) from one read of /proc/PID/stat; raises if `pid` is gone.

    The comm is the task name as /proc/PID/comm has it (do_task_stat prints it raw
    between the first '(' and the last ')'); the start time is field 22, so the
    name and the identity come from the same instant.
    """
    with open(f"{proc}/{pid}/stat", "rb") as f:
        stat = f.read()
    name = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode("utf-8", "replace")
    return name, parse_start_time(stat)


def start_time(pid: int, proc: str = "/proc") -> Optional[int]:
    """The start time of `pid`, or None when no such process exists."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            return parse_start_time(f.read())
    except (FileNotFoundError, ProcessLookupError):
        return None


def parse_status(text: str) -> dict[str, str]:
    """/proc/PID/status as {key: value} (fs/proc/array.c proc_pid_status)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields


def status(pid: int | str, proc: str = "/proc") -> dict[str, str]:
    """The fields of /proc/PID/status (`pid` may be "self"); raises if gone."""
    with open(f"{proc}/{pid}/status", encoding="utf-8", errors="replace") as f:
        return parse_status(f.read())


def cgroup(pid: int, proc: str = "/proc", limit: int = -1) -> str:
    """The text of /proc/PID/cgroup, at most `limit` bytes; raises if gone."""
    with open(f"{proc}/{pid}/cgroup", "rb") as f:
        return f.read(limit).decode("utf-8", "replace")


def ns_path(pid: int | str, proc: str = "/proc", kind: str = "net") -> str:
    """/proc/PID/ns/KIND; `pid` may be "thread-self" or "self"."""
    return f"{proc}/{pid}/ns/{kind}"


def ns_inode(pid: int | str, proc: str = "/proc", kind: str = "net") -> int:
    """The inode of a process's namespace (nsfs): what tells namespaces apart."""
    return os.stat(ns_path(pid, proc, kind)).st_ino


def parse_btime(text: str, name: str = "/proc/stat") -> int:
    """Boot time, seconds since the epoch, from /proc/stat's btime line."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("btime "):
            word = line.split()[1]
            try:
                return int(word)
            except ValueError:
                raise ValueError(f"{name}:{lineno}: not an integer {word!r}: {line!r}") from None
    raise ValueError(f"{name}: no btime line")


def boot_time(proc: str = "/proc") -> int:
    """btime of /proc/stat (fs/proc/stat.c show_stat): the epoch second of boot."""
    path = f"{proc}/stat"
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_btime(f.read(), path)


def started_epoch(ticks: int, proc: str = "/proc") -> float:
    """A start time in clock ticks as seconds since the epoch."""
    return boot_time(proc) + ticks / CLK_TCK


def nr_open(proc: str = "/proc") -> int:
    """fs.nr_open: the ceiling of any RLIMIT_NOFILE (fs/file.c sysctl_nr_open)."""
    path = f"{proc}/sys/fs/nr_open"
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}:1: not an integer {text.strip()!r}: {text!r}") from None
