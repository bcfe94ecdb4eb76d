"""Dump TCP sockets over inet_diag and decode the replies into Socket records.

The requests are built in kernel.sock_diag. Layouts from
include/uapi/linux/inet_diag.h (struct inet_diag_msg, the INET_DIAG_* attributes) and
include/uapi/linux/tcp.h (struct tcp_info). The decoder is pure: bytes in,
records out, so recorded replies replay in tests without a kernel.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

from ..kernel import netlink
from ..kernel.sock_diag import build_dump_request
from ..model.socket import TCP_INFO_FIELDS, SkMemInfo, Socket, TcpInfo
from ..model.states import ALL_STATES

# enum in inet_diag.h: reply attributes (requests: kernel.sock_diag)
INET_DIAG_MEMINFO = 1
INET_DIAG_INFO = 2
INET_DIAG_SKMEMINFO = 7
INET_DIAG_SHUTDOWN = 8
INET_DIAG_MARK = 15  # only to CAP_NET_ADMIN (inet_diag_msg_attrs_fill)
INET_DIAG_CGROUP_ID = 21

# idiag_ext asks for extension attribute N with bit 1 << (N - 1).
EXT_INFO = 1 << (INET_DIAG_INFO - 1)
EXT_SKMEMINFO = 1 << (INET_DIAG_SKMEMINFO - 1)

# struct inet_diag_msg: family, state, timer, retrans, sockid, expires,
# rqueue, wqueue, uid, inode.
DIAG_MSG = struct.Struct("=BBBBHH16s16sIIIIIIII")
# The ports are __be16 read as native u16: this table swaps them back.
_NTOHS = [socket.ntohs(p) for p in range(1 << 16)]
NLMSGHDR_SIZE = netlink.NLMSGHDR.size
NLA = struct.Struct("=HH")
U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")
SKMEMINFO = struct.Struct("=9I")
SKMEMINFO_OLD = struct.Struct("=8I")  # before SK_MEMINFO_DROPS (v4.7)

FAMILY_NUMBER = {socket.AF_INET: 4, socket.AF_INET6: 6}


# tcp_info grew over the years; each group is appended at a fixed offset.
# (end offset, struct format of the group, field count) in header order.
_TCP_INFO_GROUPS = (
    (104, "7Bx24I"),   # state .. total_retrans (2.6); byte 6 holds both wscales
    (120, "QQ"),        # pacing_rate, max_pacing_rate (3.15)
    (136, "QQ"),        # bytes_acked, bytes_received (4.1)
    (144, "II"),        # segs_out, segs_in (4.2)
    (152, "II"),        # notsent_bytes, min_rtt (4.6)
    (160, "II"),        # data_segs_in, data_segs_out (4.6)
    (168, "Q"),         # delivery_rate (4.9)
    (192, "QQQ"),       # busy_time, rwnd_limited, sndbuf_limited (4.10)
    (200, "II"),        # delivered, delivered_ce (4.18)
    (216, "QQ"),        # bytes_sent, bytes_retrans (4.19)
    (224, "II"),        # dsack_dups, reord_seen (4.19)
    (228, "I"),         # rcv_ooopack (5.4)
    (232, "I"),         # snd_wnd (5.4)
    (240, "II"),        # rcv_wnd, rehash (6.2)
    (248, "HHI"),       # total_rto, total_rto_recoveries, total_rto_time (6.7)
)
# length -> (Struct for the whole groups it holds, None padding for the rest)
_tcp_info_layouts: dict[int, tuple[struct.Struct, tuple[None, ...]] | None] = {}


def _tcp_info_layout(length: int) -> tuple[struct.Struct, tuple[None, ...]] | None:
    if length not in _tcp_info_layouts:
        fmt = "="
        for end, group in _TCP_INFO_GROUPS:
            if end > length:
                break
            fmt += group
        layout = None
        if fmt != "=":
            st = struct.Struct(fmt)
            # one packed byte holds both wscales, so fields = values + 1
            missing = len(TCP_INFO_FIELDS) - (len(st.unpack(bytes(st.size))) + 1)
            layout = (st, (None,) * missing)
        _tcp_info_layouts[length] = layout
    return _tcp_info_layouts[length]


_new_tcp_info = tuple.__new__


def decode_tcp_info(data: bytes | memoryview) -> TcpInfo | None:
    """Decode the groups of struct tcp_info present in `data`; later fields None.

    >>> decode_tcp_info(bytes(104)).total_retrans, decode_tcp_info(bytes(104)).bytes_acked
    (0, None)
    """
    layout = _tcp_info_layout(len(data))
    if layout is None:
        return None
    st, padding = layout
    v = st.unpack_from(data)
    wscale = v[6]
    # __u8 tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4; the first bitfield takes
    # the low bits on little-endian targets.
    return _new_tcp_info(TcpInfo, v[:6] + (wscale & 0xF, wscale >> 4) + v[7:] + padding)


def decode_meminfo(data: bytes | memoryview) -> SkMemInfo | None:
    if len(data) >= SKMEMINFO.size:
        return tuple.__new__(SkMemInfo, SKMEMINFO.unpack_from(data))
    if len(data) >= SKMEMINFO_OLD.size:
        return tuple.__new__(SkMemInfo, SKMEMINFO_OLD.unpack_from(data) + (None,))
    return None


class AddressCache:
    """inet_ntop with a bounded memo: most sockets share a few local addresses."""

    __slots__ = ("_v4", "_v6")
    LIMIT = 8192

    def __init__(self) -> None:
        # one memo per family: the same 16 raw bytes (e.g. all zero) are
        # 0.0.0.0 for IPv4 and :: for IPv6
        self._v4: dict[bytes, str] = {}
        self._v6: dict[bytes, str] = {}

    def text(self, family: int, raw: bytes) -> str:
        cache = self._v4 if family == socket.AF_INET else self._v6
        try:
            return cache[raw]
        except KeyError:
            pass
        if family == socket.AF_INET:
            text = socket.inet_ntop(socket.AF_INET, raw[:4])
        else:
            text = socket.inet_ntop(socket.AF_INET6, raw)
        if len(cache) >= self.LIMIT:
            cache.clear()
        cache[raw] = text
        return text


def decode_messages(chunks: Iterator[tuple[bytes, int, int]], netns: str = "host",
                    addresses: AddressCache | None = None) -> Iterator[Socket]:
    """Turn (buffer, offset, length) reply messages into Socket records."""
    addresses = addresses or AddressCache()
    text = addresses.text
    diag_unpack = DIAG_MSG.unpack_from
    nla_unpack = NLA.unpack_from
    body = NLMSGHDR_SIZE
    attrs_at = NLMSGHDR_SIZE + DIAG_MSG.size
    ntohs = _NTOHS
    for buf, offset, length in chunks:
        (family, state, timer, retrans, sport, dport, src, dst, _if, cookie_lo,
         cookie_hi, expires, rqueue, wqueue, uid, inode) = diag_unpack(buf, offset + body)
        sock = Socket(
            4 if family == socket.AF_INET else 6, state,
            text(family, src), ntohs[sport],
            text(family, dst), ntohs[dport],
            rqueue, wqueue, timer, expires, retrans, uid, inode,
            cookie_hi << 32 | cookie_lo, netns)
        if _if:
            sock.ifindex = _if
        # Attributes follow the fixed message; TIME_WAIT and SYN_RECV mini
        # sockets carry none (inet_twsk_diag_fill, inet_req_diag_fill).
        pos, end = offset + attrs_at, offset + length
        while pos + 4 <= end:
            nla_len, nla_type = nla_unpack(buf, pos)
            if nla_len < 4:
                break
            nla_type &= 0x3FFF  # NLA_F_NESTED / NLA_F_NET_BYTEORDER
            if nla_type == INET_DIAG_INFO:
                sock.tcp_info = decode_tcp_info(buf[pos + 4:pos + nla_len])
            elif nla_type == INET_DIAG_SKMEMINFO:
                sock.meminfo = decode_meminfo(buf[pos + 4:pos + nla_len])
            elif nla_type == INET_DIAG_SHUTDOWN:
                sock.shutdown = buf[pos + 4]
            elif nla_type == INET_DIAG_MARK and nla_len >= 8:
                sock.mark = U32.unpack_from(buf, pos + 4)[0]
            elif nla_type == INET_DIAG_CGROUP_ID and nla_len >= 12:
                sock.cgroup_id = U64.unpack_from(buf, pos + 4)[0]
            pos += (nla_len + 3) & ~3
        yield sock


def dump_sockets(sock: socket.socket, family: int, states: int = ALL_STATES,
                 ext: int = 0, bytecode: bytes = b"", netns: str = "host",
                 addresses: AddressCache | None = None) -> Iterator[Socket]:
    """Stream every TCP socket of one family from a sock_diag socket."""
    request = build_dump_request(family, states, ext, bytecode)
    yield from decode_messages(netlink.dump(sock, request), netns, addresses)
