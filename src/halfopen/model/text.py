"""Untrusted text made safe to show: the one rule for names that come from
processes and files halfopen does not own.

A process's comm and cmdline, a cgroup or container name, a pod label, a path
read from a config file: any local user chooses these bytes. Before they reach
a terminal, a table cell, a log line or a suggested command they pass
`shown()`, which writes what `ps` writes for the same bytes (procps escapes
control characters; here as Python-style escapes, which are unambiguous):

- C0 and C1 control characters and DEL as `\\xNN` (`\\n`, `\\r`, `\\t` by name),
  so a name can neither break a line nor send an escape sequence;
- bytes that were not UTF-8 (decoded with "surrogateescape") as `\\xNN`;
- bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the
  invisible marks that reorder or hide text as `\\uNNNN` (the "Trojan Source"
  characters, CVE-2021-42574);
- a backslash doubled, so an escape shown can be told from the same
  characters typed by the process.

Rich markup is a second interpreter: data is never passed to it as markup
(render `rich.text.Text`, or `rich.markup.escape(shown(x))`). JSON, CSV and
/metrics keep the exact text with their own escaping and do not use this.
"""

from __future__ import annotations

import re

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}

# C0, DEL, C1; lone surrogates (surrogateescape's undecodable bytes and
# malformed input); bidi embeddings/overrides/isolates; zero-width and
# direction marks; the BOM; line and paragraph separators.
_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape kept: show the byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def shown(text: str) -> str:
    r"""`text` as one safe printable line.

    >>> shown("nginx")
    'nginx'
    >>> shown("\x1b[2J\x1b]0;PWN\x07")
    '\\x1b[2J\\x1b]0;PWN\\x07'
    >>> shown("two\nlines")
    'two\\nlines'
    >>> shown("a\u202eb")
    'a\\u202eb'
    >>> shown(b"caf\xe9".decode("utf-8", "surrogateescape"))
    'caf\\xe9'
    >>> shown("back\\slash")
    'back\\\\slash'
    """
    return _UNSAFE.sub(_escape, text)


def is_plain(text: str) -> bool:
    """True when `text` needs no escaping and no quoting to be shown or pasted
    into a shell as one word: the characters of unit, file and program names.

    >>> is_plain("nginx.service"), is_plain("$(sh /tmp/a)"), is_plain("")
    (True, False, False)
    """
    return _PLAIN.fullmatch(text) is not None


_PLAIN = re.compile(r"[A-Za-z0-9_.@:+=,/-]+")
