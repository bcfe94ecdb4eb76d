"""tracefs: a private trace instance, event layouts, and the per-CPU binary buffers.

Policy-free file I/O on the kernel's tracing filesystem (Documentation/trace/ftrace.rst):

- `mount_tracefs` mounts it where it is not mounted and says whether it did, so
  the caller unmounts only what it mounted;
- `Instance` is `instances/NAME`: its own ring buffer, event switches and
  filters, leaving other tracers (trace-cmd, perf, another halfopen) alone;
- `parse_format` reads an event's `format` file: field offsets and sizes are
  taken from it at run time, never hard-coded (they moved and grew between
  4.16, 5.6 and 6.10), and `__print_symbolic` tables (enum sk_rst_reason's
  names) from its print fmt;
- `page_events` walks one ring-buffer page read from `per_cpu/cpuN/trace_pipe_raw`
  (kernel/trace/ring_buffer.c: struct buffer_data_page, the event header of
  include/linux/ring_buffer.h: type_len:5, time_delta:27, array[]);
- `parse_stats` reads `per_cpu/cpuN/stats`, where lost events are counted.

Failures are OSError with the kernel's errno; the caller says what they mean.

    >>> parse_stats("entries: 3\\noverrun: 2\\ncommit overrun: 0\\ndropped events: 1\\n")["overrun"]
    2
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import struct
from collections.abc import Iterator

from ..records import record

TRACEFS = "/sys/kernel/tracing"
PREFIX = "halfopen-"  # our instances: PREFIX + pid of the halfopen that made it
CLOSE_SUFFIX = "-close"  # its second instance, for close() (collect.trace_read)


def mounted_at(mounts: str = "/proc/self/mounts") -> str | None:
    """Where tracefs is mounted in this mount namespace (the first line), or None."""
    with open(mounts, encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.split()
            if len(words) >= 3 and words[2] == "tracefs":
                return words[1].replace("\\040", " ")
    return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def mount_tracefs(path: str = TRACEFS) -> tuple[str, bool]:
    """(where tracefs is, whether we mounted it): mount(2) when it is nowhere."""
    where = mounted_at()
    if where is not None:
        return where, False
    if _libc().mount(b"nodev", path.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tracefs on {path}: {os.strerror(err)}")
    return path, True


def unmount(path: str) -> None:
    """umount2(path, 0): only for a tracefs `mount_tracefs` mounted."""
    if _libc().umount2(path.encode(), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {path}: {os.strerror(err)}")


# -- event formats -----------------------------------------------------------------

@record(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    signed: bool
    array: bool  # declared NAME[N]


@record
class EventFormat:
    system: str
    name: str
    id: int
    fields: dict[str, Field]
    symbols: dict[str, dict[int, str]]  # field -> {value: NAME} from __print_symbolic


_FIELD = re.compile(r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
                    r"\s*signed:(?P<signed>\d+);")
_SYMBOLIC = re.compile(r"__print_symbolic\(REC->(\w+),((?:\s*\{\s*-?\w+\s*,\s*\"[^\"]*\"\s*\}\s*,?)+)\)")
_PAIR = re.compile(r"\{\s*(-?\d+)\s*,\s*\"([^\"]*)\"\s*\}")


def parse_format(text: str, system: str = "") -> EventFormat:
    """An event's `format` file (kernel/trace/trace_events.c f_show) as a value.

    >>> f = parse_format('name: x\\nID: 7\\nformat:\\n\\tfield:int oldstate;\\toffset:16;'
    ...   '\\tsize:4;\\tsigned:1;\\n\\tfield:__u8 saddr[4];\\toffset:32;\\tsize:4;\\tsigned:0;\\n\\n'
    ...   'print fmt: "%s", __print_symbolic(REC->oldstate, { 1, "NO_SOCKET" }, { 2, "B" })')
    >>> (f.id, f.fields["saddr"].offset, f.fields["saddr"].array, f.symbols["oldstate"][1])
    (7, 32, True, 'NO_SOCKET')
    """
    name, ident = "", -1
    fields: dict[str, Field] = {}
    symbols: dict[str, dict[int, str]] = {}
    for line in text.splitlines():
        if line.startswith("name: "):
            name = line[6:].strip()
        elif line.startswith("ID: "):
            ident = int(line[4:])
        elif line.startswith("print fmt: "):
            for sm in _SYMBOLIC.finditer(line):
                # a table keyed by macro names (TCP_ESTABLISHED) has no numbers to read: skipped
                pairs = {int(v): s for v, s in _PAIR.findall(sm.group(2))}
                if pairs:
                    symbols.setdefault(sm.group(1), pairs)
        else:
            m = _FIELD.search(line)
            if m:
                decl = m.group("decl").strip()
                last = decl.split()[-1].lstrip("*")
                array = "[" in last
                fname = last.split("[", 1)[0]
                fields[fname] = Field(fname, int(m.group("off")), int(m.group("size")),
                                      m.group("signed") == "1", array)
    if ident < 0 or not name:
        raise ValueError(f"not an event format (no name or ID line): {text[:80]!r}")
    return EventFormat(system, name, ident, fields, symbols)


# -- ring-buffer pages -------------------------------------------------------------

@record(frozen=True)
class PageLayout:
    """events/header_page: where a page's timestamp, commit and data are."""

    timestamp: int
    commit: int
    commit_size: int
    data: int
    data_size: int

    @property
    def page_size(self) -> int:
        return self.data + self.data_size


def parse_header_page(text: str) -> PageLayout:
    """events/header_page (ring_buffer_print_page_header).

    >>> parse_header_page("\\tfield: u64 timestamp;\\toffset:0;\\tsize:8;\\tsigned:0;\\n"
    ...   "\\tfield: local_t commit;\\toffset:8;\\tsize:8;\\tsigned:1;\\n"
    ...   "\\tfield: int overwrite;\\toffset:8;\\tsize:1;\\tsigned:1;\\n"
    ...   "\\tfield: char data;\\toffset:16;\\tsize:4080;\\tsigned:0;\\n").page_size
    4096
    """
    found: dict[str, tuple[int, int]] = {}
    for m in _FIELD.finditer(text):
        fname = m.group("decl").split()[-1]
        found.setdefault(fname, (int(m.group("off")), int(m.group("size"))))
    try:
        return PageLayout(found["timestamp"][0], found["commit"][0], found["commit"][1],
                          found["data"][0], found["data"][1])
    except KeyError as exc:
        raise ValueError(f"header_page has no {exc.args[0]} field") from None


# ring_buffer.c: the commit word's top bits flag events lost before this page.
RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
_COMMIT_MASK = ~(RB_MISSED_EVENTS | RB_MISSED_STORED) & 0xFFFFFFFF
# include/linux/ring_buffer.h enum ring_buffer_type
TYPE_DATA_MAX = 28
TYPE_PADDING = 29
TYPE_TIME_EXTEND = 30
TYPE_TIME_STAMP = 31
TS_SHIFT = 27
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def page_events(page: bytes, layout: PageLayout) -> tuple[list[tuple[int, int, int]], int]:
    """The data events of one page as (timestamp ns, payload offset, payload length),
    and the events the kernel says were lost before it (-1: some, count not stored).

    rb_event_data_length: type_len 1..28 holds type_len * 4 bytes after the 4-byte
    header; type_len 0 keeps the length in array[0] (which counts itself) and the
    data after it. Padding to the page's end is a padding event with time_delta 0.
    """
    ts = _U64.unpack_from(page, layout.timestamp)[0]
    commit = (_U64 if layout.commit_size == 8 else _U32).unpack_from(page, layout.commit)[0]
    size = commit & _COMMIT_MASK
    missed = 0
    if commit & RB_MISSED_EVENTS:
        missed = -1
        if commit & RB_MISSED_STORED and layout.data + size + 8 <= len(page):
            missed = _U64.unpack_from(page, layout.data + size)[0]
    pos = layout.data
    end = min(layout.data + size, len(page))
    out: list[tuple[int, int, int]] = []
    unpack = _U32.unpack_from
    while pos + 4 <= end:
        head = unpack(page, pos)[0]
        type_len = head & 0x1F
        delta = head >> 5
        if type_len == 0:
            length = unpack(page, pos + 4)[0]
            ts += delta
            out.append((ts, pos + 8, length - 4))
            pos += 4 + length
        elif type_len <= TYPE_DATA_MAX:
            ts += delta
            out.append((ts, pos + 4, type_len * 4))
            pos += 4 + type_len * 4
        elif type_len == TYPE_PADDING:
            if delta == 0:
                break  # the rest of the page
            pos += 4 + unpack(page, pos + 4)[0]
        elif type_len == TYPE_TIME_EXTEND:
            ts += (unpack(page, pos + 4)[0] << TS_SHIFT) | delta
            pos += 8
        else:  # TYPE_TIME_STAMP: absolute, the low 59 bits (rb_fix_abs_ts keeps the top)
            stamp = (unpack(page, pos + 4)[0] << TS_SHIFT) | delta
            ts = (ts & ~((1 << 59) - 1)) | stamp
            pos += 8
    return out, missed


def parse_stats(text: str) -> dict[str, int]:
    """per_cpu/cpuN/stats (tracing_stats_read): the integer counters by name."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        value = value.strip()
        if sep and value.isdigit():
            out[key.strip()] = int(value)
    return out


def parse_pairs(text: str) -> dict[int, int]:
    """saved_tgids: "TID TGID" lines (saved_tgids_show).

    >>> parse_pairs("12 10\\n13 10\\n")
    {12: 10, 13: 10}
    """
    out = {}
    for line in text.splitlines():
        a, _, b = line.partition(" ")
        if a.isdigit() and b.strip().isdigit():
            out[int(a)] = int(b)
    return out


def read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


# -- instances ---------------------------------------------------------------------

class Instance:
    """instances/NAME of a mounted tracefs: made by `create`, gone after `remove`."""

    def __init__(self, root: str, name: str) -> None:
        self.root = root
        self.name = name
        self.path = f"{root}/instances/{name}"

    @classmethod
    def create(cls, root: str, name: str) -> Instance:
        os.mkdir(f"{root}/instances/{name}")
        return cls(root, name)

    def remove(self) -> None:
        """rmdir: the kernel tears the buffer down (EBUSY while a file of it is open)."""
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass

    def write(self, rel: str, text: str) -> None:
        # tracefs files, not a path a user chose: O_NOFOLLOW all the same
        fd = os.open(f"{self.path}/{rel}", os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def append(self, rel: str, text: str) -> None:
        """Write without truncating (set_event_pid: the pids are added to the list)."""
        fd = os.open(f"{self.path}/{rel}", os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def read(self, rel: str) -> str:
        with open(f"{self.path}/{rel}", encoding="utf-8", errors="replace") as f:
            return f.read()

    def event_format(self, system: str, event: str) -> EventFormat:
        """The layout of system:event (the instance's copy of events/SYSTEM/EVENT/format)."""
        return parse_format(self.read(f"events/{system}/{event}/format"), system)

    def enable(self, system: str, event: str, filter_text: str | None = None) -> None:
        if filter_text:
            self.write(f"events/{system}/{event}/filter", filter_text)
        self.write(f"events/{system}/{event}/enable", "1")

    def cpus(self) -> list[int]:
        return sorted(int(n[3:]) for n in os.listdir(f"{self.path}/per_cpu")
                      if n.startswith("cpu") and n[3:].isdigit())

    def open_raw(self, cpu: int) -> int:
        """per_cpu/cpuN/trace_pipe_raw, non-blocking: a read returns one page or EAGAIN."""
        return os.open(f"{self.path}/per_cpu/cpu{cpu}/trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK)

    def stats(self, cpu: int) -> dict[str, int]:
        return parse_stats(self.read(f"per_cpu/cpu{cpu}/stats"))

    def lost(self) -> int:
        """Events the ring buffer overwrote or dropped, all CPUs (the stats counters)."""
        total = 0
        for cpu in self.cpus():
            s = self.stats(cpu)
            total += s.get("overrun", 0) + s.get("commit overrun", 0) + s.get("dropped events", 0)
        return total


def instance_pid(name: str) -> int | None:
    """The pid in an instance name of ours ("halfopen-4711", "halfopen-4711-close"
    -> 4711), else None.

    >>> instance_pid("halfopen-4711"), instance_pid("halfopen-4711-close")
    (4711, 4711)
    >>> instance_pid("halfopen-x"), instance_pid("other-1"), instance_pid("halfopen-1-x")
    (None, None, None)
    """
    if not name.startswith(PREFIX):
        return None
    tail = name[len(PREFIX):]
    if tail.endswith(CLOSE_SUFFIX):
        tail = tail[:-len(CLOSE_SUFFIX)]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(root: str) -> list[str]:
    """Remove the instances a killed halfopen left (its name, a pid no longer alive);
    any other instance is left alone. Returns the names removed."""
    removed: list[str] = []
    try:
        names = os.listdir(f"{root}/instances")
    except FileNotFoundError:
        return removed
    for name in names:
        pid = instance_pid(name)
        if pid is None or pid == os.getpid() or _alive(pid):
            continue
        try:
            os.rmdir(f"{root}/instances/{name}")
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EBUSY):
                raise
            continue
        removed.append(name)
    return removed


def read_pages(fd: int, page_size: int) -> Iterator[bytes]:
    """Every page one per-CPU pipe holds now (stops at EAGAIN)."""
    while True:
        try:
            page = os.read(fd, page_size)
        except BlockingIOError:
            return
        if not page:
            return
        yield page
