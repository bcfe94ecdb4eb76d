"""A minimal NETLINK_SOCK_DIAG client: send one request, read replies.

Message layout: include/uapi/linux/netlink.h (struct nlmsghdr, struct
nlmsgerr). Only what sock_diag needs: dump requests and acked requests.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
SOCK_DESTROY = 21

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH

NLMSGHDR = struct.Struct("=IHHII")
# A dump reply fills at most 32 KiB per skb (netlink_dump); a larger buffer
# only lets one recv take what the kernel already queued.
RECV_BUFSIZE = 1 << 16


class NetlinkError(OSError):
    """The kernel answered a request with a negative error code."""


def open_sock_diag() -> socket.socket:
    """A NETLINK_SOCK_DIAG socket in the calling thread's network namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         NETLINK_SOCK_DIAG)
    sock.bind((0, 0))
    return sock


def build_message(msg_type: int, flags: int, payload: bytes, seq: int = 1) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), msg_type, flags, seq, 0) + payload


def nlattr(attr_type: int, data: bytes) -> bytes:
    """One struct nlattr with its payload, padded to 4 bytes (NLA_ALIGN)."""
    length = 4 + len(data)
    return struct.pack("=HH", length, attr_type) + data + b"\0" * (-length % 4)


def error_code(buf: bytes, offset: int) -> int:
    """The errno carried by an NLMSG_ERROR message (0 for an ACK)."""
    (code,) = struct.unpack_from("=i", buf, offset + NLMSGHDR.size)
    return -code


def dump(sock: socket.socket, request: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Send a dump request; yield (buffer, offset, length) of each reply message.

    The buffer is shared by the messages of one recv, so decoders slice it
    instead of copying each message.
    """
    sock.send(request)
    unpack_from = NLMSGHDR.unpack_from
    while True:
        buf = sock.recv(RECV_BUFSIZE)
        if not buf:
            raise NetlinkError(errno.EIO, "netlink socket closed mid-dump")
        offset, end = 0, len(buf)
        while offset + 16 <= end:
            length, msg_type, _flags, _seq, _pid = unpack_from(buf, offset)
            if msg_type == NLMSG_DONE:
                return
            if msg_type == NLMSG_ERROR:
                code = error_code(buf, offset)
                if code:
                    raise NetlinkError(code, os.strerror(code))
                return
            yield buf, offset, length
            offset += (length + 3) & ~3


def request_ack(sock: socket.socket, request: bytes) -> int:
    """Send a request with NLM_F_ACK; return the errno of the answer (0 = done)."""
    sock.send(request)
    while True:
        buf = sock.recv(RECV_BUFSIZE)
        offset = 0
        while offset + 16 <= len(buf):
            length, msg_type, _f, _s, _p = NLMSGHDR.unpack_from(buf, offset)
            if msg_type == NLMSG_ERROR:
                return error_code(buf, offset)
            offset += (length + 3) & ~3
