"""/proc/net/sockstat and sockstat6 (net/ipv4/proc.c sockstat_seq_show)."""

from __future__ import annotations

from ...model.host import SockStat
from ._text import bad, read, to_int


def parse_sockstat(text: str, name: str = "/proc/net/sockstat") -> dict[str, dict[str, int]]:
    """Lines "PROTO: key value key value" into {PROTO: {key: value}}.

    >>> parse_sockstat("sockets: used 11\\nTCP: inuse 1 orphan 0 tw 0 alloc 1 mem 0\\n")
    {'sockets': {'used': 11}, 'TCP': {'inuse': 1, 'orphan': 0, 'tw': 0, 'alloc': 1, 'mem': 0}}
    """
    out: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        proto, sep, rest = line.partition(":")
        words = rest.split()
        if not sep or not proto or len(words) % 2:
            raise bad(name, lineno, line, "want 'PROTO: key value ...'")
        out[proto] = {words[i]: to_int(name, lineno, line, words[i + 1])
                      for i in range(0, len(words), 2)}
    return out


def to_record(raw: dict[str, dict[str, int]]) -> SockStat:
    def g(proto: str, key: str) -> int:
        return raw.get(proto, {}).get(key, 0)
    return SockStat(
        sockets_used=g("sockets", "used"), tcp_inuse=g("TCP", "inuse"),
        tcp_orphan=g("TCP", "orphan"), tcp_tw=g("TCP", "tw"), tcp_alloc=g("TCP", "alloc"),
        tcp_mem=g("TCP", "mem"), udp_inuse=g("UDP", "inuse"), udp_mem=g("UDP", "mem"),
        tcp6_inuse=g("TCP6", "inuse"), udp6_inuse=g("UDP6", "inuse"), raw=raw)


def read_sockstat(proc: str = "/proc") -> SockStat:
    raw: dict[str, dict[str, int]] = {}
    for fname in ("sockstat", "sockstat6"):
        path = f"{proc}/net/{fname}"
        try:
            text = read(path)
        except FileNotFoundError:
            if fname == "sockstat6":  # IPv6 disabled
                continue
            raise
        raw.update(parse_sockstat(text, path))
    return to_record(raw)
