"""Dump TCP sockets over inet_diag and decode the replies into Socket records.

The requests are built in kernel.sock_diag. Layouts from
include/uapi/linux/inet_diag.h (struct inet_diag_msg, the INET_DIAG_* attributes) and
include/uapi/linux/tcp.h (struct tcp_info). The decoder is pure: bytes in,
records out, so recorded replies replay in tests without a kernel.
"""

from __future__ import annotations

import socket
import struct
import sys
from array import array
from collections.abc import Iterator

from ..kernel import netlink
from ..kernel.sock_diag import build_dump_request
from ..model.socket import SKMEM_FIELDS, TCP_INFO_FIELDS, SkMemInfo, Socket, TcpInfo
from ..model.states import ALL_STATES
from ..records import record

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
# The ports are __be16 read as native u16: this table swaps them back (a list: its
# ints are made once, where an array would make one a lookup). Built by byteswap,
# not by packing 65,536 arguments: a tenth of the listing's start-up went there.
_ports = array("H", range(1 << 16))
if sys.byteorder == "little":
    _ports.byteswap()
_NTOHS = _ports.tolist()
del _ports
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

    def memo(self) -> tuple[dict[bytes, str], dict[bytes, str]]:
        """The IPv4 and IPv6 memos (raw 16 bytes -> text), for a decoder's
        inlined lookup; a miss goes through text()."""
        return self._v4, self._v6

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


def _attributes(buf: bytes | bytearray, pos: int, end: int) -> list[tuple[int, int, int]]:
    """(type, payload offset, payload length) of each attribute in buf[pos:end]."""
    out = []
    while pos + 4 <= end:
        nla_len, nla_type = NLA.unpack_from(buf, pos)
        if nla_len < 4:
            break
        # NLA_F_NESTED / NLA_F_NET_BYTEORDER are flags, not part of the type
        out.append((nla_type & 0x3FFF, pos + 4, nla_len - 4))
        pos += (nla_len + 3) & ~3
    return out


@record(frozen=True)
class _Layout:
    """Where the attributes sit in reply messages of one length.

    The kernel fills a socket's attributes in a fixed order
    (inet_diag_msg_attrs_fill, then inet_sk_diag_fill's extensions), so the
    messages of one family and length almost always share their layout. One
    Struct then reads the fixed message and every needed attribute at once,
    after a second Struct has checked that each attribute header is where
    the layout says (a message that differs is decoded attribute by attribute).
    """

    headers: struct.Struct  # every nlattr header (len, type), in order
    expect: tuple  # what `headers` must read
    values: struct.Struct  # inet_diag_msg, then the needed attribute payloads
    shutdown: int  # index in the values, -1 if absent
    mark: int  # index in the values, -1 if absent
    cgroup_id: int  # index in the values, -1 if absent
    meminfo: tuple  # (start, stop, padding) in the values, () if absent
    tcp_info: tuple  # (start, stop, padding) in the values, () if absent


def _learn_layout(buf: bytes, offset: int, length: int) -> _Layout | None:
    attrs = _attributes(buf, offset + NLMSGHDR_SIZE + DIAG_MSG.size, offset + length)
    header_fmt, pos = "=", 0  # `headers` reads from the nlmsghdr on
    expect: list[int] = []
    values_fmt, count = DIAG_MSG.format, len(DIAG_MSG.unpack(bytes(DIAG_MSG.size)))
    at = NLMSGHDR_SIZE + DIAG_MSG.size  # where values_fmt has read up to
    shutdown = mark = cgroup_id = -1
    meminfo: tuple = ()
    tcp_info: tuple = ()
    for nla_type, start, size in attrs:
        start -= offset
        header_fmt += f"{start - 4 - pos}xHH"
        pos = start
        expect += [size + 4, nla_type]
        fmt: str | None = None
        n = 0
        if nla_type == INET_DIAG_SHUTDOWN and size >= 1:
            fmt, n, shutdown = "B", 1, count
        elif nla_type == INET_DIAG_MARK and size >= 4:
            fmt, n, mark = "I", 1, count
        elif nla_type == INET_DIAG_CGROUP_ID and size >= 8:
            fmt, n, cgroup_id = "Q", 1, count
        elif nla_type == INET_DIAG_SKMEMINFO and size >= SKMEMINFO_OLD.size:
            st = SKMEMINFO if size >= SKMEMINFO.size else SKMEMINFO_OLD
            fmt, n = st.format.lstrip("="), st.size // 4
            meminfo = (count, count + n, (None,) * (len(SKMEM_FIELDS) - n))
        elif nla_type == INET_DIAG_INFO:
            layout = _tcp_info_layout(size)
            if layout is not None:
                st, padding = layout
                fmt, n = st.format.lstrip("="), len(st.unpack(bytes(st.size)))
                tcp_info = (count, count + n, padding)
        if fmt is not None:
            values_fmt += f"{start - at}x{fmt}"
            at = start + struct.calcsize("=" + fmt)
            count += n
    if not attrs:
        return None
    return _Layout(struct.Struct(header_fmt), tuple(expect), struct.Struct(values_fmt),
                   shutdown, mark, cgroup_id, meminfo, tcp_info)


_ATTRS_AT = NLMSGHDR_SIZE + DIAG_MSG.size  # where a reply message's attributes begin
# what decode_messages keeps in locals of the layout of the messages' current length:
# (layout, headers unpack, what it must read, values unpack, shutdown, mark, cgroup_id,
# meminfo, tcp_info); no layout: headers and values read the fixed message only
_NO_LAYOUT: tuple = (None, DIAG_MSG.unpack_from, (), DIAG_MSG.unpack_from, -1, -1, -1, (), ())


def _layout_locals(layouts: dict[int, _Layout | None], buf: bytes, offset: int,
                   length: int) -> tuple:
    """The layout of messages of this length (learnt from this one the first time),
    unpacked for decode_messages' locals."""
    try:
        lay = layouts[length]
    except KeyError:
        lay = layouts[length] = _learn_layout(buf, offset, length)
    if lay is None:
        return _NO_LAYOUT
    return (lay, lay.headers.unpack_from, lay.expect, lay.values.unpack_from,
            lay.shutdown, lay.mark, lay.cgroup_id, lay.meminfo, lay.tcp_info)


def _extensions(buf: bytes, start: int, end: int) -> tuple:
    """(shutdown, tcp_info, meminfo, mark, cgroup_id) read attribute by attribute from
    buf[start:end]: a message whose attributes are not where its length's layout says."""
    shutdown = tcp_info = meminfo = mark = cgroup_id = None
    for nla_type, at, size in _attributes(buf, start, end):
        if nla_type == INET_DIAG_INFO:
            tcp_info = decode_tcp_info(buf[at:at + size])
        elif nla_type == INET_DIAG_SKMEMINFO:
            meminfo = decode_meminfo(buf[at:at + size])
        elif nla_type == INET_DIAG_SHUTDOWN and size >= 1:
            shutdown = buf[at]
        elif nla_type == INET_DIAG_MARK and size >= 4:
            mark = U32.unpack_from(buf, at)[0]
        elif nla_type == INET_DIAG_CGROUP_ID and size >= 8:
            cgroup_id = U64.unpack_from(buf, at)[0]
    return shutdown, tcp_info, meminfo, mark, cgroup_id


def decode_messages(chunks: Iterator[tuple[bytes, int, int]], netns: str = "host",
                    addresses: AddressCache | None = None) -> Iterator[Socket]:
    """Turn (buffer, offset, length) reply messages into Socket records.

    The messages of a dump come in long runs of one length: a message whose
    attributes sit where its length's layout says is read with one unpack
    (the layout's, kept in locals for the run); any other attribute by attribute.
    """
    addresses = addresses or AddressCache()
    text = addresses.text
    v4, v6 = addresses.memo()
    diag_unpack = DIAG_MSG.unpack_from
    body = NLMSGHDR_SIZE
    ntohs = _NTOHS
    af_inet = socket.AF_INET
    new = tuple.__new__
    layouts: dict[int, _Layout | None] = {}
    last = -1
    lay, headers, expect, values, i_shut, i_mark, i_cgroup, mem, info = _NO_LAYOUT
    for buf, offset, length in chunks:
        if length != last:
            last = length
            (lay, headers, expect, values, i_shut, i_mark, i_cgroup, mem,
             info) = _layout_locals(layouts, buf, offset, length)
        if lay is not None and headers(buf, offset) == expect:
            v = values(buf, offset + body)
            # v: family, state, timer, retrans, sport, dport, src, dst, if,
            # cookie lo, cookie hi, expires, rqueue, wqueue, uid, inode, ...
            shutdown = v[i_shut] if i_shut >= 0 else None
            mark = v[i_mark] if i_mark >= 0 else None
            cgroup_id = v[i_cgroup] if i_cgroup >= 0 else None
            meminfo = new(SkMemInfo, v[mem[0]:mem[1]] + mem[2]) if mem else None
            if info:
                a, b, padding = info
                wscale = v[a + 6]  # see decode_tcp_info
                tcp_info = new(TcpInfo, v[a:a + 6] + (wscale & 0xF, wscale >> 4)
                               + v[a + 7:b] + padding)
            else:
                tcp_info = None
        else:
            v = diag_unpack(buf, offset + body)  # the same first 16 values
            if length > _ATTRS_AT:
                shutdown, tcp_info, meminfo, mark, cgroup_id = _extensions(buf, offset + _ATTRS_AT,
                                                                           offset + length)
            else:  # TIME_WAIT and SYN_RECV mini sockets carry none (inet_twsk_diag_fill, inet_req_diag_fill)
                shutdown = tcp_info = meminfo = mark = cgroup_id = None
        if v[0] == af_inet:
            family = 4
            local = v4.get(v[6]) or text(af_inet, v[6])
            peer = v4.get(v[7]) or text(af_inet, v[7])
        else:
            family = 6
            local = v6.get(v[6]) or text(v[0], v[6])
            peer = v6.get(v[7]) or text(v[0], v[7])
        yield Socket(family, v[1], local, ntohs[v[4]], peer, ntohs[v[5]],
                     v[12], v[13], v[2], v[11], v[3], v[14], v[15], v[10] << 32 | v[9], netns,
                     shutdown, tcp_info, meminfo, (), None, v[8], mark, cgroup_id)


def dump_sockets(sock: socket.socket, family: int, states: int = ALL_STATES,
                 ext: int = 0, bytecode: bytes = b"", netns: str = "host",
                 addresses: AddressCache | None = None) -> Iterator[Socket]:
    """Stream every TCP socket of one family from a sock_diag socket."""
    request = build_dump_request(family, states, ext, bytecode)
    yield from decode_messages(netlink.dump(sock, request), netns, addresses)
