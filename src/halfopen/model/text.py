"""Untrusted text made safe to show: the one rule for names that come from
processes and files halfopen does not own.

A process's comm and cmdline, a cgroup or container name, a pod label, a path
read from a config file: any local user chooses these bytes. Before they reach
a terminal, a table cell, a log line or a suggested command they pass
`shown()`, which does what `ps` does for the same bytes (procps escapes what
the terminal would interpret; here as Python-style escapes, which are
unambiguous):

- every character Python does not call printable (`str.isprintable`: the C0
  and C1 controls, DEL, format characters, separators other than the space,
  unassigned and private-use code points) as `\\xNN`, `\\uNNNN` or
  `\\UNNNNNNNN` (`\\n`, `\\r`, `\\t` by name), so a name can neither break a
  line nor send an escape sequence; the format characters include the
  bidirectional overrides, isolates and marks and the zero-width characters
  that reorder or hide text (the "Trojan Source" characters, CVE-2021-42574);
- bytes that were not UTF-8 (decoded with "surrogateescape") as `\\xNN`;
  decoded with "replace", as /proc readers here do, they are U+FFFD already;
- a backslash doubled, so an escape shown can be told from the same
  characters typed by the process.

The escaped text is what `shown` returns for every input, so error lines
(cli.main) and tables use the same function. Rich markup is a second
interpreter: data is never passed to it as markup (render `rich.text.Text`,
or `rich.markup.escape(shown(x))`). JSON, CSV and /metrics keep the exact text
with their own escaping and do not use this.
"""

from __future__ import annotations

import re

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    if ch == " " or ch.isprintable():
        return ch
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape kept: show the byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(text: str) -> str:
    r"""`text` as one safe printable line.

    >>> shown("nginx"), shown("php-fpm: pool www")
    ('nginx', 'php-fpm: pool www')
    >>> shown("\x1b[2J\x1b]0;PWN\x07")
    '\\x1b[2J\\x1b]0;PWN\\x07'
    >>> shown("two\nlines\r\tx\x7f\x9b")
    'two\\nlines\\r\\tx\\x7f\\x9b'
    >>> shown("a\u202eb\u2066c\u200bd\u061ce\ufeff")
    'a\\u202eb\\u2066c\\u200bd\\u061ce\\ufeff'
    >>> shown(b"caf\xe9".decode("utf-8", "surrogateescape")), shown(b"caf\xe9".decode("utf-8", "replace"))
    ('caf\\xe9', 'caf\ufffd')
    >>> shown("back\\slash"), shown("[bold]x[/]"), shown("café 東京")
    ('back\\\\slash', '[bold]x[/]', 'café 東京')
    >>> shown("\U000e0041\u2028\xa0")
    '\\U000e0041\\u2028\\xa0'
    """
    if text.isprintable() and "\\" not in text:  # the common case, at C speed
        return text
    return "".join([_escape(ch) for ch in text])


def is_plain(text: str) -> bool:
    """True when `text` needs no escaping and no quoting to be shown or pasted
    into a shell as one word: the characters of unit, file and program names.

    >>> is_plain("nginx.service"), is_plain("$(sh /tmp/a)"), is_plain("")
    (True, False, False)
    """
    return _PLAIN.fullmatch(text) is not None


_PLAIN = re.compile(r"[A-Za-z0-9_.@:+=,/-]+")
