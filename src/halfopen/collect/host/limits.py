"""Per-process fd counts and RLIMIT_NOFILE (/proc/PID/fd, /proc/PID/limits)."""

from __future__ import annotations

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


def read_nofile(pid: int, proc: str = "/proc") -> tuple[int, int]:
    path = f"{proc}/{pid}/limits"
    return parse_nofile(read(path), path)
