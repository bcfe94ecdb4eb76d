"""The kernel log lines that matter to the doctor, with their wall-clock times.

/dev/kmsg gives one record per read(2): "PRI,SEQ,USEC,FLAGS[,...];TEXT\\n"
followed by optional " KEY=VALUE" dictionary lines (Documentation/ABI/testing/
dev-kmsg). Opened O_NONBLOCK, read(2) fails with EAGAIN past the last record
and EPIPE when a record was overwritten before we read it. When /dev/kmsg
cannot be opened we run `dmesg -r` ("<PRI>[SECONDS] TEXT"). USEC is
CLOCK_MONOTONIC since boot; wall time = btime + USEC/1e6, as `dmesg -T` does
(off by the time spent suspended).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess

from halfopen.records import record

from ...model.host import KernelLogLine

# kind -> pattern on the message text. Named groups "port", "pid", "comm" are kept.
PATTERNS: dict[str, re.Pattern[str]] = {
    # net/ipv4/tcp_input.c tcp_syn_flood_action(): "port %pISpc" on 6.x, "port %d" before
    "syn-flood": re.compile(r"Possible SYN flooding on port (?:\S*?:)?(?P<port>\d+)\."),
    # net/netfilter/nf_conntrack_core.c __nf_conntrack_alloc()
    "conntrack-full": re.compile(r"nf_conntrack: table full, dropping packet"),
    # net/ipv4/tcp_timer.c tcp_out_of_resources()
    "tcp-memory": re.compile(r"out of memory -- consider tuning tcp_mem"),
    "orphans": re.compile(r"too many orphaned sockets"),
    # older kernels' "Out of socket memory"
    "socket-memory": re.compile(r"Out of socket memory"),
    # mm/oom_kill.c __oom_kill_process(); its "oom-kill:" summary line is not kept
    # so that one kill counts once
    "oom-kill": re.compile(r"Killed process (?P<pid>\d+) \((?P<comm>[^)]*)\)"),
}


@record
class Record:
    level: int  # syslog level, PRI & 7
    seq: int  # -1 from dmesg
    usec: int  # CLOCK_MONOTONIC microseconds since boot
    text: str


def parse_kmsg_record(data: str, name: str = "/dev/kmsg") -> Record:
    """One /dev/kmsg record; continuation (" KEY=VALUE") lines are dropped.

    >>> parse_kmsg_record("4,1024,5000000,-;TCP: too many orphaned sockets\\n SUBSYSTEM=net\\n")
    Record(level=4, seq=1024, usec=5000000, text='TCP: too many orphaned sockets')
    """
    first = data.split("\n", 1)[0]
    prefix, sep, text = first.partition(";")
    fields = prefix.split(",")
    if not sep or len(fields) < 4:
        raise ValueError(f"{name}: record without 'PRI,SEQ,USEC,FLAGS;': {first!r}")
    try:
        pri, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError:
        raise ValueError(f"{name}: record with a non-numeric prefix: {first!r}") from None
    return Record(pri & 7, seq, usec, text)


_DMESG = re.compile(r"<(\d+)>\[\s*(\d+)\.(\d{6})\] ?(.*)")


def parse_dmesg_raw(text: str, name: str = "dmesg -r") -> list[Record]:
    """`dmesg -r` lines into Records (seq -1).

    >>> parse_dmesg_raw("<4>[   12.000500] nf_conntrack: table full, dropping packet\\n")
    [Record(level=4, seq=-1, usec=12000500, text='nf_conntrack: table full, dropping packet')]
    """
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        m = _DMESG.fullmatch(line)
        if m is None:
            raise ValueError(f"{name}:{lineno}: not '<PRI>[SECONDS] TEXT': {line!r}")
        out.append(Record(int(m[1]) & 7, -1, int(m[2]) * 1_000_000 + int(m[3]), m[4]))
    return out


def classify(rec: Record, btime: float,
             patterns: dict[str, re.Pattern[str]] = PATTERNS) -> KernelLogLine | None:
    """A KernelLogLine if the record matches a pattern, else None.

    >>> classify(Record(6, 7, 2_500_000, "TCP: request_sock_TCP: Possible SYN flooding on "
    ...                 "port [::]:8080. Sending cookies."), 1000.0).port
    8080
    """
    for kind, pattern in patterns.items():
        m = pattern.search(rec.text)
        if m is None:
            continue
        groups = m.groupdict()
        return KernelLogLine(
            kind=kind, text=rec.text, wall_time=btime + rec.usec / 1e6,
            uptime_s=rec.usec / 1e6, seq=rec.seq, level=rec.level,
            port=int(groups["port"]) if groups.get("port") else None,
            pid=int(groups["pid"]) if groups.get("pid") else None,
            comm=groups.get("comm") or "")
    return None


def read_kmsg(path: str = "/dev/kmsg", limit: int = 1 << 20) -> list[Record]:
    """Every record still in the ring buffer, without blocking (at most `limit`)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    out: list[Record] = []
    try:
        while len(out) < limit:
            try:
                data = os.read(fd, 16384)
            except BlockingIOError:  # EAGAIN: no more records
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten before we read it
                    continue
                raise
            if not data:
                break
            out.append(parse_kmsg_record(data.decode("utf-8", "replace"), path))
    finally:
        os.close(fd)
    return out


def read_dmesg(timeout: float = 5.0) -> list[Record]:
    proc = subprocess.run(["dmesg", "-r"], capture_output=True, text=True, timeout=timeout,
                          errors="replace")
    if proc.returncode != 0:
        raise OSError(f"dmesg -r exited {proc.returncode}: {proc.stderr.strip()}")
    return parse_dmesg_raw(proc.stdout)


def collect(btime: float, path: str = "/dev/kmsg",
            patterns: dict[str, re.Pattern[str]] = PATTERNS) -> tuple[list[KernelLogLine], str, str]:
    """(lines that matter, source used, why kmsg was not used or "").

    Raises OSError only when neither /dev/kmsg nor dmesg could be read.
    """
    why = ""
    try:
        records, source = read_kmsg(path), path
    except OSError as exc:
        why = f"{path}: {exc.strerror or exc}"
        try:
            records, source = read_dmesg(), "dmesg"
        except (OSError, subprocess.SubprocessError) as exc2:
            raise OSError(f"{why}; dmesg: {exc2}") from exc2
    kept = [line for rec in records if (line := classify(rec, btime, patterns)) is not None]
    return kept, source, why
