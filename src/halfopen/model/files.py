"""Reading the files a user names: bounded in size, UTF-8, JSON without surprises.

Every file halfopen reads on a user's word goes through here, so `--snapshot
/dev/zero` is refused at once instead of reading until memory runs out, and a
file that is not UTF-8, not JSON, nested 100,000 deep or full of `NaN` gives one
line naming the file, never a traceback:

    read_bytes(path, what, max_bytes)   regular files up to max_bytes (their size
                                        is checked before reading); pipes are read
                                        up to max_bytes + 1; devices and
                                        directories are refused
    read_text(...)                      the same, decoded as strict UTF-8
    read_json(...)                      the same, parsed: NaN/Infinity refused,
                                        deep nesting refused (schema.check
                                        bounds it to MAX_DEPTH)
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from ..errors import UsageError

MiB = 1 << 20
MAX_DEPTH = 64  # our documents nest 6 deep; Evidence values and Fix params a little more


def read_bytes(path: str, what: str, max_bytes: int) -> bytes:
    """The bytes of `path`, refusing devices, directories and anything over max_bytes."""
    if "\0" in path:
        raise UsageError(f"bad {what} path {path!r}: contains a NUL byte")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{what} {path} is a directory, not a file")
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise UsageError(f"{what} {path} is not a regular file or a pipe")
        if st.st_size > max_bytes:
            raise UsageError(f"{what} {path} is {st.st_size:,} bytes: over the "
                             f"{max_bytes:,}-byte limit")
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(MiB, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise UsageError(f"{what} {path} is over the {max_bytes:,}-byte limit")
    return b"".join(chunks)


def read_text(path: str, what: str, max_bytes: int) -> str:
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not a JSON number")


def parse_json(text: str, where: str) -> Any:
    """JSON as RFC 8259 has it (no NaN/Infinity); too deep a nesting is one line.

    The C decoder stops at the interpreter's recursion limit (about 1,000 deep);
    `schema.check` then refuses anything deeper than MAX_DEPTH.

    >>> parse_json('{"a": [1, 2.5]}', "x")
    {'a': [1, 2.5]}
    """
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise UsageError(f"{where}: nested too deep") from None
    except ValueError as exc:  # JSONDecodeError, NaN, an integer over 4,300 digits
        raise UsageError(f"{where} is not valid JSON: {exc}") from None


def read_json(path: str, what: str, max_bytes: int) -> Any:
    return parse_json(read_text(path, what, max_bytes), f"{what} {path}")
