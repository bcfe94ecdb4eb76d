"""nf_conntrack of one namespace: count, max, TCP timeouts, per-CPU stats.

Read only: when the module is not loaded its files are absent and we say so;
we never load it (reading /proc/sys/net/netfilter does not load it either).
"""

from __future__ import annotations

import os

from ...model.host import Conntrack
from ._text import bad, read, to_int

TIMEOUT_PREFIX = "nf_conntrack_tcp_timeout_"


def parse_stat(text: str, name: str = "/proc/net/stat/nf_conntrack") -> tuple[dict[str, int], int]:
    """Per-CPU hex rows under one header, summed: ({column: total}, cpus).

    >>> parse_stat("entries drop early_drop\\n0000000a 00000001 00000000\\n0000000a 00000002 00000000\\n")
    ({'entries': 20, 'drop': 3, 'early_drop': 0}, 2)
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{name}: empty")
    names = lines[0].split()
    totals = dict.fromkeys(names, 0)
    for lineno, line in enumerate(lines[1:], 2):
        words = line.split()
        if len(words) != len(names):
            raise bad(name, lineno, line, f"{len(words)} columns, header has {len(names)}")
        for key, word in zip(names, words):
            try:
                totals[key] += int(word, 16)
            except ValueError:
                raise bad(name, lineno, line, f"not hex {word!r}") from None
    return totals, len(lines) - 1


def module_loaded(proc: str = "/proc") -> bool | None:
    """Is nf_conntrack in /proc/modules? None if /proc/modules is unreadable."""
    try:
        text = read(f"{proc}/modules")
    except OSError:
        return None
    return any(line.split(" ", 1)[0] == "nf_conntrack" for line in text.splitlines())


def read_conntrack(proc: str = "/proc", net_proc: str | None = None) -> Conntrack:
    """Conntrack facts; `net_proc` is where net/stat lives (…/thread-self inside setns)."""
    net_proc = net_proc or proc
    sysdir = f"{proc}/sys/net/netfilter"
    if not os.path.exists(f"{sysdir}/nf_conntrack_max"):
        loaded = module_loaded(proc)
        if loaded is False:
            why = "nf_conntrack module not loaded (not tracking connections)"
        elif loaded:
            why = f"nf_conntrack loaded but {sysdir} is not visible in this namespace"
        else:
            why = f"{sysdir}/nf_conntrack_max absent: nf_conntrack not loaded or built in"
        return Conntrack(False, why)

    def num(fname: str) -> int | None:
        path = f"{sysdir}/{fname}"
        try:
            text = read(path)
        except FileNotFoundError:
            return None
        return to_int(path, 1, text, text.strip())

    timeouts = {}
    for fname in sorted(os.listdir(sysdir)):
        if fname.startswith(TIMEOUT_PREFIX):
            value = num(fname)
            if value is not None:
                timeouts[fname[len(TIMEOUT_PREFIX):]] = value
    stats: dict[str, int] = {}
    cpus = 0
    stat_path = f"{net_proc}/net/stat/nf_conntrack"
    try:
        stats, cpus = parse_stat(read(stat_path), stat_path)
    except FileNotFoundError:
        pass
    return Conntrack(True, "", count=num("nf_conntrack_count"), max=num("nf_conntrack_max"),
                     buckets=num("nf_conntrack_buckets"), tcp_timeouts=timeouts,
                     stats=stats, cpus=cpus)
