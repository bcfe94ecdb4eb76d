"""TCP states as the kernel numbers them, and ss's names and groups for them.

Numbers: include/net/tcp_states.h. Names and groups: iproute2 misc/ss.c
(sstate_name, and the "connected"/"synchronized"/"bucket"/"big" groups).
"""

from enum import IntEnum


class TcpState(IntEnum):
    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12

    @property
    def ss_name(self) -> str:
        """ss's spelling: 'close-wait', 'estab', ... (misc/ss.c sstate_name)."""
        return SS_NAMES[self]


SS_NAMES = {
    TcpState.ESTABLISHED: "ESTAB",
    TcpState.SYN_SENT: "SYN-SENT",
    TcpState.SYN_RECV: "SYN-RECV",
    TcpState.FIN_WAIT1: "FIN-WAIT-1",
    TcpState.FIN_WAIT2: "FIN-WAIT-2",
    TcpState.TIME_WAIT: "TIME-WAIT",
    TcpState.CLOSE: "UNCONN",
    TcpState.CLOSE_WAIT: "CLOSE-WAIT",
    TcpState.LAST_ACK: "LAST-ACK",
    TcpState.LISTEN: "LISTEN",
    TcpState.CLOSING: "CLOSING",
    TcpState.NEW_SYN_RECV: "SYN-RECV",
}

# The name used in JSON and our own output: the kernel's, lower case.
STATE_KEYS = {s: s.name.lower() for s in TcpState}
STATE_BY_KEY = {v: k for k, v in STATE_KEYS.items()}


def _mask(*states: TcpState) -> int:
    m = 0
    for s in states:
        m |= 1 << s
    return m


ALL_STATES = _mask(*TcpState)
# ss: "all" excludes nothing; the kernel reports SYN_RECV request sockets as
# NEW_SYN_RECV in the dump only when the SYN_RECV bit is set (inet_diag_dump_icsk).
# "synchronized": every connected state except syn-sent (ss(8)); SYN_RECV is in.
_SYNCHRONIZED = ALL_STATES & ~_mask(TcpState.LISTEN, TcpState.SYN_SENT, TcpState.CLOSE)

# Every word `state WORD` accepts, with the states it selects (misc/ss.c).
STATE_WORDS: dict[str, int] = {
    "established": _mask(TcpState.ESTABLISHED),
    "syn-sent": _mask(TcpState.SYN_SENT),
    "syn-recv": _mask(TcpState.SYN_RECV, TcpState.NEW_SYN_RECV),
    "fin-wait-1": _mask(TcpState.FIN_WAIT1),
    "fin-wait-2": _mask(TcpState.FIN_WAIT2),
    "time-wait": _mask(TcpState.TIME_WAIT),
    "closed": _mask(TcpState.CLOSE),
    "close-wait": _mask(TcpState.CLOSE_WAIT),
    "last-ack": _mask(TcpState.LAST_ACK),
    "listening": _mask(TcpState.LISTEN),
    "closing": _mask(TcpState.CLOSING),
    "all": ALL_STATES,
    "connected": ALL_STATES & ~_mask(TcpState.LISTEN, TcpState.CLOSE),
    "synchronized": _SYNCHRONIZED,
    "bucket": _mask(TcpState.SYN_RECV, TcpState.NEW_SYN_RECV, TcpState.TIME_WAIT),
    "big": ALL_STATES & ~_mask(TcpState.SYN_RECV, TcpState.NEW_SYN_RECV, TcpState.TIME_WAIT),
}
# The words to list in help and errors; the aliases below are accepted too.
STATE_WORD_NAMES = tuple(STATE_WORDS)
# Aliases ss also takes.
STATE_WORDS["estab"] = STATE_WORDS["established"]
STATE_WORDS["listen"] = STATE_WORDS["listening"]
STATE_WORDS["close"] = STATE_WORDS["closed"]
# ss's own extra names (misc/ss.c scan_state, sstate_namel): "unknown" is
# state 0, which no TCP socket is in.
STATE_WORDS["unconnected"] = STATE_WORDS["closed"]
STATE_WORDS["syn-rcv"] = STATE_WORDS["syn-recv"]
STATE_WORDS["unknown"] = 1
for _s in TcpState:  # the kernel's own spelling too: close_wait, fin_wait1 ...
    if _s is not TcpState.NEW_SYN_RECV:
        STATE_WORDS.setdefault(STATE_KEYS[_s], _mask(_s))


def state_name(state: int) -> str:
    """Our name for a kernel state number: 8 -> 'close_wait'."""
    try:
        return STATE_KEYS[TcpState(state)]
    except ValueError:
        return f"unknown_{state}"
