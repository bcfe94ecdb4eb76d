"""Monitoring-plugin thresholds: `-w`/`-c` ranges on the doctor's perfdata figures.

The range syntax is the Monitoring Plugins Development Guidelines' ("Threshold
and Ranges", https://www.monitoring-plugins.org/doc/guidelines.html#THRESHOLDFORMAT):

    10      alert outside 0..10 (below 0 or above 10)
    10:     alert below 10
    ~:10    alert above 10 (no lower end)
    10:20   alert outside 10..20
    @10:20  alert inside 10..20, ends included

A threshold names its figure, as check_snmp's and check_nwc_health's labelled
thresholds do: `-w close_wait=100 -c close_wait=500`. Pure: text in, values out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from halfopen.records import record

from ..errors import UsageError

_NUMBER = r"-?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})"
_RANGE = re.compile(rf"(@)?(?:(~|{_NUMBER}):)?({_NUMBER})?")
_LABEL = re.compile(r"[a-z][a-z0-9_]{0,63}")
SYNTAX = "N, N:, ~:N, N:M or @N:M (Monitoring Plugins range syntax)"


@record(frozen=True)
class Range:
    """An alert range: alert when the value is outside lo..hi (inside, with '@')."""

    lo: float
    hi: float
    inside: bool
    text: str  # as written, for the perfdata warn/crit field

    def alerts(self, value: float) -> bool:
        """True when `value` is past the threshold.

        >>> [parse_range("10").alerts(v) for v in (-1, 0, 10, 10.5)]
        [True, False, False, True]
        >>> [parse_range("@10:20").alerts(v) for v in (9, 10, 20, 21)]
        [False, True, True, False]
        """
        within = self.lo <= value <= self.hi
        return within if self.inside else not within


def parse_range(text: str) -> Range:
    """One range in the guidelines' syntax; a bad one is a UsageError saying what is valid.

    >>> r = parse_range("~:10"); (r.lo, r.hi, r.inside)
    (-inf, 10.0, False)
    >>> r = parse_range("10:"); (r.lo, r.hi)
    (10.0, inf)
    """
    m = _RANGE.fullmatch(text.strip())
    if not text.strip() or m is None or (m.group(2) is None and m.group(3) is None):
        raise UsageError(f"bad threshold range {text!r}: want {SYNTAX}")
    at, start, end = m.groups()
    lo = -math.inf if start == "~" else float(start) if start is not None else 0.0
    hi = float(end) if end is not None else math.inf
    if lo > hi:
        raise UsageError(f"bad threshold range {text!r}: the start {start} is above the end {end}")
    return Range(lo, hi, at is not None, text.strip())


def parse_thresholds(words: Iterable[str], option: str, labels: Iterable[str]) -> dict[str, Range]:
    """`LABEL=RANGE` words (repeatable, or comma-separated) -> {label: Range}.

    >>> sorted(parse_thresholds(["close_wait=100,syn_recv=@5:"], "-w", ["close_wait", "syn_recv"]))
    ['close_wait', 'syn_recv']
    """
    known = list(labels)
    out: dict[str, Range] = {}
    for word in words:
        for item in word.split(","):
            label, eq, text = item.partition("=")
            label = label.strip()
            if not eq:
                raise UsageError(f"bad {option} {item!r}: want LABEL=RANGE, e.g. close_wait=100 "
                                 f"(labels: {', '.join(known)})")
            if not _LABEL.fullmatch(label) or label not in known:
                raise UsageError(f"bad {option} {item!r}: unknown figure {label!r} "
                                 f"(labels: {', '.join(known)})")
            try:
                out[label] = parse_range(text)
            except UsageError as exc:
                raise UsageError(f"bad {option} {item!r}: {exc}") from None
    return out
