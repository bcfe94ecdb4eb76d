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
        elif self.event in ("reset-sent", "reset-received"):
            d["reason"] = self.reason
            d["state"] = self.state
        elif self.event == "retransmit-timeout":
            d["state"] = self.state
        elif self.event == "close":
            d["fd"] = self.fd
            d["state"] = self.state
        if self.cookie is not None:
            d["cookie"] = self.cookie
        return d
