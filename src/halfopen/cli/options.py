"""Options several commands share, and the value types every option uses.

Values are checked here, at the edge, so nothing past the command line sees
a number it cannot use: integers are ASCII digits only (Python's int() also
takes '²', '١٢' and '1_000'), numbers are finite (float() takes 'inf', 'nan'
and '1e309'), and every value is bounded. A bad value is one line naming the
option and what is valid, exit 64.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any, Optional

import click

from ..collect import netns
from ..errors import UsageError
from . import complete

PID_MAX = 4194304  # PID_MAX_LIMIT on 64-bit (include/linux/threads.h)
NAME_MAX = 255  # include/uapi/linux/limits.h: one path component, in bytes
PATH_MAX = 4096
_DIGITS = re.compile(r"[0-9]{1,30}")
_DECIMAL = re.compile(r"[0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30}")


class Integer(click.ParamType):
    """A whole number in lo..hi, written in ASCII digits."""

    name = "integer"

    def __init__(self, lo: int, hi: int, what: str = "") -> None:
        self.lo, self.hi, self.what = lo, hi, what

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
            number = int(value.strip())
        else:
            self.fail(f"{value!r}: want {self._valid()}", param, ctx)
        if not self.lo <= number <= self.hi:
            self.fail(f"{value!r}: want {self._valid()}", param, ctx)
        return number

    def _valid(self) -> str:
        return f"{self.what or 'a whole number'} from {self.lo} to {self.hi}"


class Seconds(click.ParamType):
    """A finite decimal number of seconds in lo..hi (no exponent, no inf/nan)."""

    name = "seconds"

    def __init__(self, lo: float = 0.0, hi: float = 10 * 365 * 86400.0) -> None:
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            number = float(value.strip())
        else:
            number = math.nan
        if not (math.isfinite(number) and self.lo <= number <= self.hi):
            self.fail(f"{value!r}: want a number of seconds from {self.lo:g} to {self.hi:g} "
                      "(digits and an optional decimal point)", param, ctx)
        return number


class FilePath(click.ParamType):
    """A path a file is read from or written to: no NUL byte, at most PATH_MAX."""

    name = "path"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> str:
        text = str(value)
        raw = fs_bytes(text)
        if not text or raw is None or b"\0" in raw or len(raw) > PATH_MAX:
            self.fail(f"{text!r}: want a file path (not empty, no NUL byte or lone surrogate, at most "
                      f"{PATH_MAX} bytes)", param, ctx)
        return text


def fs_bytes(text: str) -> Optional[bytes]:
    """`text` as the kernel gets it (os.fsencode), or None for a lone surrogate
    such as '\\ud800': no byte string decodes to one, so no file is named by it.

    >>> fs_bytes("caf\\xe9"), fs_bytes("\\udcff"), fs_bytes("\\ud800")
    (b'caf\\xc3\\xa9', b'\\xff', None)
    """
    try:
        return os.fsencode(text)
    except UnicodeEncodeError:
        return None


PID = Integer(1, PID_MAX, "a process id")
PORT = Integer(1, 65535, "a port")
PATH = FilePath()


def check_netns_name(name: str) -> str:
    """An `ip netns` name: one path component, as ip-netns(8) accepts.

    >>> check_netns_name("ho-1a2b"), check_netns_name("pod:shop/web-7f9")
    ('ho-1a2b', 'pod:shop/web-7f9')
    """
    raw = fs_bytes(name)
    pod = name.startswith(netns.POD_PREFIX)
    # pod:NAMESPACE/POD names a pod's namespace (netns.named looks it up); each part
    # obeys the rule of an ip-netns name
    parts = name[len(netns.POD_PREFIX):].split("/") if pod else [name]
    if len(parts) != (2 if pod else 1) or raw is None or len(raw) > NAME_MAX or "\0" in name \
            or any(p in ("", ".", "..") or "/" in p for p in parts):
        raise UsageError(f"bad --netns {name!r}: a name from `ip netns list` (not empty, "
                         f"not . or .., no '/', at most {NAME_MAX} bytes) or "
                         f"{netns.POD_PREFIX}NAMESPACE/POD")
    return name


def namespace_options(func: Callable) -> Callable:
    func = click.option("--all-netns", is_flag=True,
                        help="Every network namespace of running processes and /run/netns.")(func)
    func = click.option("--netns-pid", type=PID, metavar="PID",
                        help="The network namespace of process PID.")(func)
    func = click.option("--netns", "netns_name", metavar="NAME",
                        help="A namespace from /run/netns (ip netns).")(func)
    return func


def resolve_namespaces(netns_name: str | None, netns_pid: int | None,
                       all_netns: bool) -> tuple[netns.Namespace, ...]:
    chosen = sum(x is not None and x is not False for x in (netns_name, netns_pid, all_netns))
    if chosen > 1:
        raise UsageError("choose one of --netns, --netns-pid, --all-netns")
    if netns_name is not None:
        return (netns.named(check_netns_name(netns_name)),)
    if netns_pid is not None:
        return (netns.of_pid(netns_pid),)
    if all_netns:
        return tuple(netns.all_namespaces())
    return ()


filter_argument = click.argument("filter_words", nargs=-1, metavar="[FILTER]...",
                                 shell_complete=complete.filter_words)
