"""inet_diag requests: a dump of TCP sockets, and SOCK_DESTROY of one socket.

Layouts from include/uapi/linux/inet_diag.h (struct inet_diag_req_v2,
struct inet_diag_sockid). Building a request changes nothing; collect sends
dumps only, fix sends SOCK_DESTROY. The replies are decoded in
collect.diag_replies.
"""

from __future__ import annotations

import socket
import struct

from ..model.socket import Socket
from ..model.states import ALL_STATES
from . import netlink

INET_DIAG_REQ_BYTECODE = 1  # request attribute: a filter program (collect.bytecode)

# struct inet_diag_sockid: ports are __be16, addresses __be32[4], then
# idiag_if and idiag_cookie[2] in host order.
SOCKID = struct.Struct("=HH16s16sIII")
REQ_V2 = struct.Struct("=BBBBI")  # family, protocol, ext, pad, states; then sockid
# idiag_cookie INET_DIAG_NOCOOKIE: any socket (include/uapi/linux/inet_diag.h)
NOCOOKIE = 0xFFFFFFFF


def build_dump_request(family: int, states: int = ALL_STATES, ext: int = 0,
                       bytecode: bytes = b"") -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request for TCP sockets of one family."""
    payload = REQ_V2.pack(family, socket.IPPROTO_TCP, ext, 0, states)
    payload += SOCKID.pack(0, 0, bytes(16), bytes(16), 0, NOCOOKIE, NOCOOKIE)
    if bytecode:
        payload += netlink.nlattr(INET_DIAG_REQ_BYTECODE, bytecode)
    return netlink.build_message(netlink.SOCK_DIAG_BY_FAMILY,
                                 netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP, payload)


def build_destroy_request(sock: Socket) -> bytes:
    """A SOCK_DESTROY request naming one socket by its 4-tuple and cookie.

    The cookie makes the kernel refuse a new connection that reuses the
    4-tuple (inet_diag_find_one_icsk checks sock_diag_check_cookie).
    """
    family = socket.AF_INET if sock.family == 4 else socket.AF_INET6
    payload = REQ_V2.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << sock.state)
    payload += SOCKID.pack(
        socket.htons(sock.local_port), socket.htons(sock.peer_port),
        _pack_addr(family, sock.local_addr), _pack_addr(family, sock.peer_addr), 0,
        sock.cookie & 0xFFFFFFFF, sock.cookie >> 32)
    return netlink.build_message(netlink.SOCK_DESTROY,
                                 netlink.NLM_F_REQUEST | netlink.NLM_F_ACK, payload)


def _pack_addr(family: int, addr: str) -> bytes:
    return socket.inet_pton(family, addr).ljust(16, b"\0")
