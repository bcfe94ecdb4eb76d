"""What `halfopen trace` reports: one event of a connection's end, and its JSON.

Event kinds (the `--jsonl` contract, docs/trace.md, schema halfopen.trace/1):

- `state`: a state change that matters for half-open diagnosis (who ended the
  connection: ESTABLISHED -> CLOSE_WAIT is the peer's FIN, ESTABLISHED ->
  FIN_WAIT1 this side's close; leaving CLOSE_WAIT, with the exact time spent in it);
- `reset-sent` / `reset-received`: a RST, with the kernel's reason (enum
  sk_rst_reason, 6.10+) where it gives one and the socket's state;
- `retransmit-timeout`: a segment the kernel retransmitted (tcp_retransmit_skb);
- `close`: close() by the owner of a socket we follow, with its fd.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from halfopen.records import record

from .states import TcpState

EVENT_KINDS = ("state", "reset-sent", "reset-received", "retransmit-timeout", "close")
SCHEMA = "halfopen.trace/1"

# ss's state words (misc/ss.c sstate_namel), what `state WORD` accepts.
STATE_WORD = {
    TcpState.ESTABLISHED: "established", TcpState.SYN_SENT: "syn-sent",
    TcpState.SYN_RECV: "syn-recv", TcpState.FIN_WAIT1: "fin-wait-1",
    TcpState.FIN_WAIT2: "fin-wait-2", TcpState.TIME_WAIT: "time-wait",
    TcpState.CLOSE: "closed", TcpState.CLOSE_WAIT: "close-wait",
    TcpState.LAST_ACK: "last-ack", TcpState.LISTEN: "listening",
    TcpState.CLOSING: "closing", TcpState.NEW_SYN_RECV: "syn-recv",
}


def state_word(number: int) -> str | None:
    """ss's word for a kernel state number; None for 0 (no socket) or unknown.

    >>> state_word(8), state_word(0)
    ('close-wait', None)
    """
    try:
        return STATE_WORD[TcpState(number)]
    except ValueError:
        return None


def endpoint(addr: str, port: int) -> str:
    """ADDR:PORT, IPv6 in brackets.

    >>> endpoint("::1", 80), endpoint("10.0.0.1", 443)
    ('[::1]:80', '10.0.0.1:443')
    """
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@record
class TraceEvent:
    time: float  # seconds since the epoch
    event: str  # one of EVENT_KINDS
    src: str | None  # ADDR:PORT of this host's side
    dst: str | None  # ADDR:PORT of the peer
    pid: int | None = None  # the socket's owner (never the softirq's common_pid)
    comm: str | None = None
    container: str | None = None  # its container's name (or short id)
    netns: str | None = None  # "host" when sock_diag saw it there; None: not known
    from_state: str | None = None  # state events
    to_state: str | None = None
    ended_by: str | None = None  # "peer" (its FIN) or "local" (our FIN), leaving ESTABLISHED
    lived_s: float | None = None  # ESTABLISHED -> end, when its start was seen
    close_wait_s: float | None = None  # leaving CLOSE_WAIT: exact time in it, when seen entering
    reason: str | None = None  # resets: enum sk_rst_reason's name in lower case
    state: str | None = None  # resets, retransmits and close: the socket's state
    fd: int | None = None  # close
    cookie: int | None = None  # the socket's cookie, where an event or sock_diag gave it
    idle_s: float | None = None  # reset-received: idle before it (last data, tcp_info at a lookup)
    gave_up: str | None = None  # -> closed by the kernel giving up: "keepalive" or "retransmit"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"time": round(self.time, 6), "event": self.event,
                             "pid": self.pid, "comm": self.comm, "src": self.src, "dst": self.dst}
        if self.container is not None:
            d["container"] = self.container
        d["netns"] = self.netns
        if self.event == "state":
            d["from"] = self.from_state
            d["to"] = self.to_state
            if self.ended_by is not None:
                d["ended_by"] = self.ended_by
            if self.lived_s is not None:
                d["lived_s"] = round(self.lived_s, 6)
            if self.close_wait_s is not None:
                d["close_wait_s"] = round(self.close_wait_s, 6)
            if self.gave_up is not None:
                d["gave_up"] = self.gave_up
        elif self.event in ("reset-sent", "reset-received"):
            d["reason"] = self.reason
            d["state"] = self.state
            if self.idle_s is not None:
                d["idle_s"] = round(self.idle_s, 3)
        elif self.event == "retransmit-timeout":
            d["state"] = self.state
        elif self.event == "close":
            d["fd"] = self.fd
            d["state"] = self.state
        if self.cookie is not None:
            d["cookie"] = self.cookie
        return d


# -- what the doctor reads from a trace window (`doctor --trace`) ----------------------

GAVE_UP_KEEPALIVE = "keepalive"  # tcp_send_reset reason tcp_keepalive_timeout, then -> closed
GAVE_UP_RETRANSMIT = "retransmit"  # retransmitted, then -> closed with no reset either way


@record
class ResetSeen:
    """A reset received on a connection, with how long it had been idle before it."""

    time: float  # seconds since the epoch
    src: str  # this host's side, ADDR:PORT
    dst: str  # the peer (or whoever answered in its name: a middlebox), ADDR:PORT
    state: str | None  # the socket's state when the reset came
    idle_s: float | None  # from the last data either way (tcp_info at the last lookup) to the reset


@record
class TraceOwnerFacts:
    """One owner's connection ends in the window (pid None: owner not known)."""

    pid: int | None
    comm: str | None
    netns: str | None  # "host" when the tracer's namespace saw its sockets; None: not known
    fins_received: int = 0  # peers' FINs (established -> close-wait) in the window
    closes_called: int = 0  # of those sockets, how many the owner closed or shut down
    close_wait_ages_s: list[float] = field(default_factory=list)  # exact, of those sockets:
    # time in CLOSE_WAIT until it left, or until the window's end for the ones still in it
    still_in_close_wait: int = 0  # of those sockets, in CLOSE_WAIT at the window's end
    earlier_close_wait: int = 0  # CLOSE_WAIT sockets whose FIN came before the window
    earlier_closed: int = 0  # of those, closed by the owner in the window
    resets_sent: dict[str, int] = field(default_factory=dict)  # reason ("-": none given) -> count
    keepalive_giveups: int = 0
    retransmit_giveups: int = 0
    giveup_peers: dict[str, int] = field(default_factory=dict)  # peer ADDR:PORT -> give-ups
    retransmits: int = 0
    resets_received: list[ResetSeen] = field(default_factory=list)


@record
class TraceFacts:
    """A trace window's events folded per owner: what `doctor --trace` passes the rules.

    `note` is set, and `owners` empty, when nothing could be traced (no tracefs, no
    permission, a kernel without the tracepoints): the rules then run as without it."""

    window_s: float
    lost_events: int = 0
    owners: list[TraceOwnerFacts] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    note: str = ""  # why there is no trace

    @property
    def traced(self) -> bool:
        return not self.note

    def owner(self, pid: int | None) -> TraceOwnerFacts | None:
        for row in self.owners:
            if row.pid == pid:
                return row
        return None

    def to_dict(self) -> dict[str, Any]:
        """What `doctor --json` carries under "trace" (the per-owner detail is evidence)."""
        return {"window_s": round(self.window_s, 3), "lost_events": self.lost_events,
                "traced": self.traced, "notes": list(self.notes) + ([self.note] if self.note else []),
                "owners": [{"pid": o.pid, "comm": o.comm, "fins_received": o.fins_received,
                            "closes_called": o.closes_called,
                            "still_in_close_wait": o.still_in_close_wait,
                            "keepalive_giveups": o.keepalive_giveups,
                            "retransmit_giveups": o.retransmit_giveups,
                            "resets_sent": dict(o.resets_sent),
                            "resets_received": len(o.resets_received)}
                           for o in self.owners if o.pid is not None]}
