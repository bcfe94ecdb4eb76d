"""Keepalive options of one TCP socket: read them, set them, and release it.

Options from include/uapi/linux/tcp.h and socket(7). TCP_KEEPIDLE and
TCP_KEEPINTVL take seconds (1..32767, MAX_TCP_KEEPIDLE), TCP_KEEPCNT
1..127 (MAX_TCP_KEEPCNT), TCP_USER_TIMEOUT milliseconds (0: the kernel's
retries). Setting SO_KEEPALIVE on an established or CLOSE_WAIT socket starts
its keepalive timer at once (tcp_set_keepalive); a listener passes the
setting to the connections it accepts later.
"""

from __future__ import annotations

import socket
from dataclasses import asdict
from typing import Any

from halfopen.records import record

MAX_KEEPIDLE = 32767
MAX_KEEPINTVL = 32767
MAX_KEEPCNT = 127


@record(frozen=True)
class Keepalive:
    keepalive: bool  # SO_KEEPALIVE
    idle: int  # TCP_KEEPIDLE, seconds before the first probe
    interval: int  # TCP_KEEPINTVL, seconds between probes
    count: int  # TCP_KEEPCNT, unanswered probes before the reset
    user_timeout_ms: int  # TCP_USER_TIMEOUT; 0 = tcp_retries2 decides

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """'keepalive 60s/10s x6' or 'off (idle 7200s/75s x9)'."""
        times = f"{self.idle}s/{self.interval}s x{self.count}"
        ut = f", user_timeout {self.user_timeout_ms}ms" if self.user_timeout_ms else ""
        return (f"keepalive {times}{ut}" if self.keepalive else f"off ({times}{ut})")


def tcp_kind(sock: socket.socket) -> str | None:
    """None for a TCP socket, else what it is (our check before any change)."""
    domain = sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
    kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
    proto = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
    if domain in (socket.AF_INET, socket.AF_INET6) and kind == socket.SOCK_STREAM \
            and proto == socket.IPPROTO_TCP:
        return None
    return f"domain {domain}, type {kind}, protocol {proto}"


def read(sock: socket.socket) -> Keepalive:
    get = sock.getsockopt
    return Keepalive(
        bool(get(socket.SOL_SOCKET, socket.SO_KEEPALIVE)),
        get(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        get(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        get(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        get(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )


def write(sock: socket.socket, wanted: Keepalive) -> Keepalive:
    """Set every option that differs; return what the kernel now reports."""
    have = read(sock)
    put = sock.setsockopt
    # times first, so the timer SO_KEEPALIVE starts already uses them
    if wanted.idle != have.idle:
        put(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, wanted.idle)
    if wanted.interval != have.interval:
        put(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, wanted.interval)
    if wanted.count != have.count:
        put(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, wanted.count)
    if wanted.user_timeout_ms != have.user_timeout_ms:
        put(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, wanted.user_timeout_ms)
    if wanted.keepalive != have.keepalive:
        put(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(wanted.keepalive))
    return read(sock)


def release(sock: socket.socket) -> None:
    """shutdown(SHUT_WR): our FIN goes out; CLOSE_WAIT moves to LAST_ACK.

    The fd stays open in the owner until it calls close().
    """
    sock.shutdown(socket.SHUT_WR)
