"""Small helpers shared by the parsers: read a file, fail with file and line."""

from __future__ import annotations


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def bad(name: str, lineno: int, line: str, why: str) -> ValueError:
    """A ValueError naming the file, the line number (1-based) and the line."""
    return ValueError(f"{name}:{lineno}: {why}: {line!r}")


def to_int(name: str, lineno: int, line: str, word: str) -> int:
    try:
        return int(word)
    except ValueError:
        raise bad(name, lineno, line, f"not an integer {word!r}") from None
