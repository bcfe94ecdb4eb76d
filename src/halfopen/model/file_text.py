"""The text of files a user names, checked without I/O: UTF-8, JSON without surprises.

Reading is halfopen.fsio's (fsio.read_file: no symlink, FIFO or device,
bounded in size); what it read is checked here, so a file that is not UTF-8,
not JSON, nested 100,000 deep or full of `NaN` gives one line naming the
file, never a traceback, and never a byte of the file:

    parse_json(text, where)     JSON as RFC 8259 has it: NaN/Infinity refused,
                                deep nesting refused (schema.check bounds it
                                to MAX_DEPTH)
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import UsageError

MiB = 1 << 20
MAX_DEPTH = 64  # our documents nest 6 deep; Evidence values and Fix params a little more


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not a JSON number")


def parse_json(text: str, where: str) -> Any:
    """JSON as RFC 8259 has it (no NaN/Infinity); too deep a nesting is one line.

    The C decoder stops at the interpreter's recursion limit (about 1,000 deep);
    `schema.check` then refuses anything deeper than MAX_DEPTH. The error gives
    the line and column, not the text there.

    >>> parse_json('{"a": [1, 2.5]}', "x")
    {'a': [1, 2.5]}
    """
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise UsageError(f"{where}: nested too deep") from None
    except ValueError as exc:  # JSONDecodeError (line and column), NaN, over 4,300 digits
        raise UsageError(f"{where} is not valid JSON: {exc}") from None
