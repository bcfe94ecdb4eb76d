"""The aligned table of `halfopen sockets`: past SPILL_ROWS rows it keeps the
rows in a temporary file, not in memory, and prints the same table."""

from __future__ import annotations

import io
import re

from sockets_support import DATA

from halfopen.cli import sockets_out
from halfopen.collect import diag_replies
from halfopen.model.socket import Owner

MESSAGES = [bytes.fromhex(line) for line in (DATA / "golden_dump.hex").read_text().splitlines()
            if line and not line.startswith("#")]


def golden_sockets(odd: str = "a\tb\nc"):
    """The recorded dump, with owners given (one with a comm a process may set:
    prctl(PR_SET_NAME) takes any bytes but NUL, newlines and tabs included)."""
    socks = list(diag_replies.decode_messages(iter((m, 0, len(m)) for m in MESSAGES), "golden"))
    for i, s in enumerate(socks):
        if s.inode:
            s.owners = (Owner(1000 + i, odd if i % 3 == 0 else "srv", 3 + i),)
    return socks


def render(socks, spill_rows, info=True, show_netns=False) -> str:
    out = io.StringIO()
    n = sockets_out.write_table(socks, out, info, show_netns, spill_rows=spill_rows)
    assert n == len(socks)
    return out.getvalue()


def test_spilled_table_is_the_in_memory_table():
    socks = golden_sockets() * 7  # > 100 rows
    whole = render(socks, spill_rows=10 ** 9)
    for spill_rows in (1, 2, 50, len(socks) - 1, len(socks)):
        assert render(socks, spill_rows) == whole, spill_rows
    for show_netns in (False, True):
        assert (render(socks, 3, info=False, show_netns=show_netns)
                == render(socks, 10 ** 9, info=False, show_netns=show_netns))


def test_columns_are_aligned_over_every_row():
    socks = golden_sockets(odd="a b")  # a newline in a comm would start a line
    text = render(socks, spill_rows=2, info=False)
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == len(socks) + 2
    header = lines[0]
    assert header.startswith("State")
    peer_at = header.index("Peer Address:Port")
    for s, line in zip(socks, lines[1:]):
        cell = sockets_out.endpoint(s.peer_addr, s.peer_port)
        assert line[peer_at:peer_at + len(cell)] == cell, line
        assert re.match(rf"{re.escape(sockets_out.state_text(s.state))}\s", line)


def test_empty_table_is_the_header():
    assert render([], spill_rows=1, info=False).count("\n") == 1
