"""One TCP socket as the kernel reports it, and what hangs off it.

Field names follow the kernel's (struct inet_diag_msg and struct tcp_info in
include/uapi/linux/inet_diag.h and tcp.h) without their prefixes, so each can
be checked against the headers.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from halfopen.records import record

from .container import Container
from .states import STATE_BY_KEY, state_name

# idiag_timer values (net/ipv4/inet_diag.c inet_sk_diag_fill, inet_twsk_diag_fill).
TIMER_OFF, TIMER_ON, TIMER_KEEPALIVE, TIMER_TIMEWAIT, TIMER_PERSIST = range(5)
TIMER_NAMES = {TIMER_OFF: "off", TIMER_ON: "on", TIMER_KEEPALIVE: "keepalive",
               TIMER_TIMEWAIT: "timewait", TIMER_PERSIST: "persist"}

# Socket.direction: the connection was accepted by a listener of its namespace, or this
# host connected out.
INBOUND = "in"
OUTBOUND = "out"
DIRECTIONS = (INBOUND, OUTBOUND)

# sk_shutdown bits (include/net/sock.h): RCV_SHUTDOWN 1, SEND_SHUTDOWN 2.
RCV_SHUTDOWN = 1
SEND_SHUTDOWN = 2


class TcpInfo(NamedTuple):
    """struct tcp_info (include/uapi/linux/tcp.h). Times are in ms, rtt in us.

    A field is None when the running kernel's tcp_info is too short to hold it.
    A tuple, not a dataclass: 100k of them are built per dump, and a tuple
    is built and formatted in C.
    """

    state: int
    ca_state: int
    retransmits: int
    probes: int
    backoff: int
    options: int
    snd_wscale: int
    rcv_wscale: int
    rto: int
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int
    sacked: int
    lost: int
    retrans: int
    fackets: int
    last_data_sent: int
    last_ack_sent: int
    last_data_recv: int
    last_ack_recv: int
    pmtu: int
    rcv_ssthresh: int
    rtt: int
    rttvar: int
    snd_ssthresh: int
    snd_cwnd: int
    advmss: int
    reordering: int
    rcv_rtt: int
    rcv_space: int
    total_retrans: int
    pacing_rate: int | None = None
    max_pacing_rate: int | None = None
    bytes_acked: int | None = None
    bytes_received: int | None = None
    segs_out: int | None = None
    segs_in: int | None = None
    notsent_bytes: int | None = None
    min_rtt: int | None = None
    data_segs_in: int | None = None
    data_segs_out: int | None = None
    delivery_rate: int | None = None
    busy_time: int | None = None
    rwnd_limited: int | None = None
    sndbuf_limited: int | None = None
    delivered: int | None = None
    delivered_ce: int | None = None
    bytes_sent: int | None = None
    bytes_retrans: int | None = None
    dsack_dups: int | None = None
    reord_seen: int | None = None
    rcv_ooopack: int | None = None
    snd_wnd: int | None = None
    rcv_wnd: int | None = None
    rehash: int | None = None
    total_rto: int | None = None
    total_rto_recoveries: int | None = None
    total_rto_time: int | None = None


TCP_INFO_FIELDS = TcpInfo._fields


class SkMemInfo(NamedTuple):
    """INET_DIAG_SKMEMINFO: u32[SK_MEMINFO_VARS] (include/uapi/linux/sock_diag.h)."""

    rmem_alloc: int
    rcvbuf: int
    wmem_alloc: int
    sndbuf: int
    fwd_alloc: int
    wmem_queued: int
    optmem: int
    backlog: int
    drops: int | None = None


SKMEM_FIELDS = SkMemInfo._fields


class Owner(NamedTuple):
    """A process holding a file descriptor on the socket."""

    pid: int
    comm: str
    fd: int
    container: Optional[Container] = None  # None: on the host, or not known

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pid": self.pid, "comm": self.comm, "fd": self.fd}
        if self.container is not None:
            d["container"] = self.container.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Owner:
        c = d.get("container")
        return cls(d["pid"], d["comm"], d["fd"], Container.from_dict(c) if c else None)


@record
class Socket:
    """One row of the kernel's TCP table."""

    family: int  # 4 or 6
    state: int  # TcpState number
    local_addr: str
    local_port: int
    peer_addr: str
    peer_port: int
    recv_q: int  # LISTEN: accept queue length; else bytes not yet read
    send_q: int  # LISTEN: backlog; else bytes not yet acked
    timer: int  # TIMER_NAMES key
    timer_expires_ms: int
    timer_retrans: int  # retransmits (timer on) or probes (keepalive/persist)
    uid: int
    inode: int
    cookie: int
    netns: str = "host"
    shutdown: int | None = None
    tcp_info: TcpInfo | None = None
    meminfo: SkMemInfo | None = None
    owners: tuple[Owner, ...] = ()
    # DIRECTIONS: "in" when the local port is a listening port of the namespace, "out"
    # otherwise; None for listeners and when unknown (set by collect.direction).
    direction: str | None = None
    # For the dev/fwmark/cgroup filter words: idiag_if (sk_bound_dev_if), and the
    # INET_DIAG_MARK / INET_DIAG_CGROUP_ID attributes (full sockets only: None).
    ifindex: int = 0
    mark: int | None = None
    cgroup_id: int | None = None

    @property
    def state_name(self) -> str:
        return state_name(self.state)

    @property
    def timer_name(self) -> str:
        return TIMER_NAMES.get(self.timer, "unknown")

    @property
    def fin_age_s(self) -> tuple[float, float] | None:
        """In CLOSE_WAIT: (lower, upper) bound of the seconds since the peer's FIN.

        The FIN was ACKed, so last_ack_recv is a lower bound (any later ACK
        resets it); last_data_recv ignores a bare FIN, so it is an upper bound.
        None without tcp_info.
        """
        ti = self.tcp_info
        if ti is None:
            return None
        return ti.last_ack_recv / 1000, ti.last_data_recv / 1000

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: flat, stable keys; absent parts are left out."""
        d: dict[str, Any] = {
            "netns": self.netns,
            "family": self.family,
            "state": state_name(self.state),
            "recv_q": self.recv_q,
            "send_q": self.send_q,
            "local_addr": self.local_addr,
            "local_port": self.local_port,
            "peer_addr": self.peer_addr,
            "peer_port": self.peer_port,
            "timer": TIMER_NAMES.get(self.timer, "unknown"),
            "timer_expires_ms": self.timer_expires_ms,
            "timer_retrans": self.timer_retrans,
            "uid": self.uid,
            "inode": self.inode,
            "cookie": self.cookie,
            "direction": self.direction,
        }
        if self.shutdown is not None:
            d["shutdown"] = self.shutdown
        if self.owners:
            d["owners"] = [o.to_dict() for o in self.owners]
        if self.tcp_info is not None:
            d["tcp_info"] = {k: v for k, v in zip(TCP_INFO_FIELDS, self.tcp_info)
                             if v is not None}
        if self.meminfo is not None:
            d["meminfo"] = {k: v for k, v in zip(SKMEM_FIELDS, self.meminfo) if v is not None}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Socket:
        timer = {v: k for k, v in TIMER_NAMES.items()}.get(d["timer"], 0)
        ti = d.get("tcp_info")
        mi = d.get("meminfo")
        direction = d.get("direction")
        if direction is not None and direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r}: want one of {DIRECTIONS} or null")
        return cls(
            family=d["family"], state=int(STATE_BY_KEY[d["state"]]),
            local_addr=d["local_addr"], local_port=d["local_port"],
            peer_addr=d["peer_addr"], peer_port=d["peer_port"],
            recv_q=d["recv_q"], send_q=d["send_q"], timer=timer,
            timer_expires_ms=d["timer_expires_ms"], timer_retrans=d["timer_retrans"],
            uid=d["uid"], inode=d["inode"], cookie=d["cookie"], netns=d.get("netns", "host"),
            shutdown=d.get("shutdown"),
            tcp_info=TcpInfo(**ti) if ti is not None else None,
            meminfo=SkMemInfo(**mi) if mi is not None else None,
            owners=tuple(Owner.from_dict(o) for o in d.get("owners", ())),
            direction=direction,
        )
