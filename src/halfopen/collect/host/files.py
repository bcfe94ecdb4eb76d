"""Host-wide file and memory facts: fs.file-nr, file-max, nr_open, meminfo, btime
(the last two read by kernel.procfs)."""

from __future__ import annotations

from ...kernel import procfs
from ...model.host import FileLimits, Memory
from ._text import bad, read, to_int


def parse_file_nr(text: str, name: str = "/proc/sys/fs/file-nr") -> tuple[int, int, int]:
    """ "378\\t0\\t2466170" -> (allocated, free, max).

    >>> parse_file_nr("378\\t0\\t2466170\\n")
    (378, 0, 2466170)
    """
    words = text.split()
    if len(words) != 3:
        raise bad(name, 1, text, "want 3 integers")
    a, f, m = (to_int(name, 1, text, w) for w in words)
    return a, f, m


def read_files(proc: str = "/proc") -> FileLimits:
    allocated, free, file_max = parse_file_nr(read(f"{proc}/sys/fs/file-nr"))
    return FileLimits(allocated, free, file_max, procfs.nr_open(proc))


def parse_meminfo(text: str, name: str = "/proc/meminfo") -> Memory:
    """MemTotal and MemAvailable, in kB.

    >>> parse_meminfo("MemTotal: 100 kB\\nMemFree: 10 kB\\nMemAvailable: 50 kB\\n")
    Memory(total_kb=100, available_kb=50)
    """
    found: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        key, sep, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            words = rest.split()
            if not sep or not words:
                raise bad(name, lineno, line, "want 'Key: N kB'")
            found[key] = to_int(name, lineno, line, words[0])
    for key in ("MemTotal", "MemAvailable"):
        if key not in found:
            raise ValueError(f"{name}: no {key} line")
    return Memory(found["MemTotal"], found["MemAvailable"])


def read_memory(proc: str = "/proc") -> Memory:
    return parse_meminfo(read(f"{proc}/meminfo"), f"{proc}/meminfo")
