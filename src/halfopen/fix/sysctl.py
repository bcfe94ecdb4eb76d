"""The sysctls halfopen may set: which, their valid values, read and write.

Values are written straight to /proc/sys (no sysctl(8), no shell), inside the
finding's network namespace for the per-namespace keys. Which keys, their
valid values and their scope come from model.sysctls. Every key a doctor
rule suggests must be settable (tests/fix/test_fix_from_doctor.py checks).
"""

from __future__ import annotations

import os

from halfopen.records import record

from ..collect import netns
from ..errors import UsageError
from ..model.sysctls import SYSCTLS

PROC_SYS = "/proc/sys"


@record(frozen=True)
class Knob:
    key: str  # dotted name, as sysctl(8) spells it
    low: int
    high: int
    per_netns: bool  # False: one value for the host, set from the host namespace
    pair: bool = False  # two numbers, low <= high (ip_local_port_range)
    numbers: int = 0  # how many numbers when not 1 or 2 (tcp_mem: three, ascending)


# the sysctls halfopen may set and their valid values: from the one table, model.sysctls
KNOBS: dict[str, Knob] = {
    s.key: Knob(s.key, s.valid[0], s.valid[1], s.per_netns, pair=s.numbers == 2,
                numbers=s.numbers if s.numbers > 2 else 0)
    for s in SYSCTLS.values() if s.valid is not None}


def knob(key: str) -> Knob:
    try:
        return KNOBS[key]
    except KeyError:
        raise UsageError(f"sysctl {key!r} is not one halfopen sets; it sets: "
                         + ", ".join(sorted(KNOBS))) from None


def normalize(text: str) -> str:
    """Whitespace as sysctl(8) prints it: '32768\\t60999\\n' -> '32768 60999'."""
    return " ".join(text.split())


def check(key: str, value: object) -> str:
    """The value as text for /proc/sys; UsageError if it is not valid for `key`."""
    k = knob(key)
    text = normalize(" ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value))
    parts = text.split(" ")
    want = k.numbers or (2 if k.pair else 1)
    # ASCII digits: str.isdigit() is also true of '²', which int() refuses
    if len(parts) != want or not all(p.lstrip("-").isascii() and p.lstrip("-").isdigit()
                                     for p in parts):
        words = {1: "a number", 2: "two numbers"}.get(want, f"{want} numbers")
        raise UsageError(f"bad value {text!r} for {key}: {words} in {k.low}..{k.high}")
    numbers = [int(p) for p in parts]
    if not all(k.low <= n <= k.high for n in numbers) or numbers != sorted(numbers):
        raise UsageError(f"bad value {text!r} for {key}: {k.low}..{k.high}"
                         + (", low <= high" if want > 1 else ""))
    return " ".join(str(n) for n in numbers)


def path(key: str, root: str = PROC_SYS) -> str:
    return f"{root}/{key.replace('.', '/')}"


def read(key: str, space: netns.Namespace, root: str = PROC_SYS) -> str:
    with netns.entered(space), open(path(key, root)) as f:
        return normalize(f.read())


def write(key: str, value: str, space: netns.Namespace, root: str = PROC_SYS) -> None:
    """One write(2) of the whole value; the kernel's refusal is an OSError."""
    with netns.entered(space):
        fd = os.open(path(key, root), os.O_WRONLY)
        try:
            os.write(fd, value.encode() + b"\n")
        finally:
            os.close(fd)
