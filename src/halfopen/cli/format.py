"""Small text helpers for human output."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from ..model.text import shown
from ..units import seconds


def duration_ms(ms: int | None) -> str:
    """Milliseconds as a short human duration; from a minute up, the doctor's format.

    >>> [duration_ms(x) for x in (0, 850, 12_300, 200_000, 7_500_000, 200_000_000)]
    ['0ms', '850ms', '12.3s', '3m20s', '2h05m', '2d07h']
    """
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return seconds(ms / 1000)


def endpoint(addr: str, port: int) -> str:
    """ss's way: '10.0.0.1:80', '[::1]:443'; port 0 (a listener's peer) is '*'.

    >>> endpoint("::", 0), endpoint("10.0.0.1", 80)
    ('[::]:*', '10.0.0.1:80')
    """
    port_text = "*" if port == 0 else str(port)
    if ":" in addr:
        return f"[{addr}]:{port_text}"
    return f"{addr}:{port_text}"


def table(rows: list[list[str]], header: list[str], right: AbstractSet[int] = frozenset()) -> str:
    """Align columns; columns in `right` are right-aligned (numbers).

    Every cell passes model.text.shown(): a cell may hold a process name, and
    a newline or an escape sequence in it would break the row or the terminal.

    >>> print(table([["a\\nb", "10"]], ["name", "n"], {1}))
    name  n
    a\\nb 10
    """
    rows = [[shown(cell) for cell in row] for row in rows]
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    lines = []
    for row in [header] + rows:
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                 for i, cell in enumerate(row)]
        lines.append(" ".join(cells).rstrip())
    return "\n".join(lines)
