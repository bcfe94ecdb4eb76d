"""Line-oriented configuration files (haproxy, redis, Apache httpd): the lines a reader keeps.

One directive a line, words split on blanks, quotes and backslash escapes as the
three servers read them (haproxy's cfgparse, redis's sdssplitargs, httpd's
ap_getword_conf agree on what matters here). A reader keeps only the lines whose
first word it names, so what is kept of a file stays small whatever the file;
each kept line costs the budget one item.

    >>> outline('# c\\ntimeout client 2s # note\\nmode "http"\\nbalance x\\n', {"timeout", "mode"})
    [(2, ('timeout', 'client', '2s')), (3, ('mode', 'http'))]
    >>> outline("KeepAliveTimeout \\\\\\n  7\\n", {"keepalivetimeout"}, continuation=True)
    [(1, ('keepalivetimeout', '7'))]
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection
from typing import Optional

from .config_files import Budget

MAX_WORDS = 16  # words kept of one line: the directives read take a few
Line = tuple[int, tuple[str, ...]]  # (line number, words: the first lower-cased)

_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"?|\'((?:[^\'\\]|\\.)*)\'?|((?:[^\s"\'\\]|\\.)+)')


def words(line: str, inline_comments: bool = True) -> list[str]:
    """The words of one line; a `#` outside quotes starts a comment when `inline_comments`
    (haproxy), only at the line's start otherwise (redis, httpd).

    >>> words('bind "127.0.0.1:80" name\\\\ x # comment'), words("a b#c", False)
    (['bind', '127.0.0.1:80', 'name x'], ['a', 'b#c'])
    """
    out: list[str] = []
    text = line.strip()
    if text.startswith("#"):
        return out
    pos = 0
    while pos < len(text) and len(out) < MAX_WORDS:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text) or (inline_comments and text[pos] == "#"):
            break
        m = _WORD.match(text, pos)
        if m is None:  # a lone backslash at the end
            out.append(text[pos:])
            break
        raw = m.group(1) if m.group(1) is not None else m.group(2)
        if raw is None:
            raw = m.group(3)
            if inline_comments and "#" in raw:
                raw = raw.split("#", 1)[0]
                if raw:
                    out.append(re.sub(r"\\(.)", r"\1", raw))
                break
        out.append(re.sub(r"\\(.)", r"\1", raw))
        pos = m.end()
    return out


def outline(text: str, kept: Collection[str], budget: Optional[Budget] = None,
            inline_comments: bool = True, continuation: bool = False) -> list[Line]:
    """The kept lines of a file: those whose first word (lower-cased) is in `kept`.

    continuation: a line ending in a backslash goes on at the next (httpd)."""
    out: list[Line] = []
    pending, start = "", 0
    for n, raw in enumerate(text.split("\n"), 1):
        if budget is not None and not n & 1023:
            budget.tick()
        if continuation:
            if raw.endswith("\\"):
                pending, start = pending + raw[:-1] + " ", start or n
                continue
            raw, number = pending + raw, start or n
            pending, start = "", 0
        else:
            number = n
        head = raw.lstrip()[:64].split(None, 1)
        if not head or head[0].lower() not in kept:
            continue
        got = words(raw, inline_comments)
        if not got:
            continue
        if budget is not None:
            budget.take_items(1)
        out.append((number, (sys.intern(got[0].lower()), *got[1:])))
    return out
