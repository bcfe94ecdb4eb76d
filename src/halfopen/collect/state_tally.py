"""What a scrape counts, read from sock_diag without a Socket record a socket.

The exporter's and the watch's streamed sample needs, of most sockets, only
their state and their holder: states per process, per namespace. Three dumps
per namespace and family ask the kernel only for what each state needs:

- every state but LISTEN and CLOSE_WAIT, without extensions (idiag_ext 0):
  of each message only nlmsg_len, the state, the source port (SYN_RECV is
  counted per port) and the inode are read, with one Struct.unpack_from on
  the receive buffer;
- CLOSE_WAIT with INET_DIAG_INFO: the cookie, the inode and tcp_info's
  last_ack_recv (the age estimate, watch/sample.py), one unpack_from each
  from a layout learnt per message length (as collect.diag_replies does);
- LISTEN, without extensions, decoded in full (collect.diag_replies): few
  sockets, and a listener's series want its address and queues.

Holders come from the owner cache's InodeTable, probed inline (the same
Fibonacci hash and linear probe as collect.inode_table). Inodes the table
does not know go back to the cache (OwnerCache.recover), as attach() does
for Socket records. What comes out is a Tally: counts, the CLOSE_WAIT
sightings in arrays, the listeners. Tests compare the Sample built from it
with the one built from Socket records (tests/watch/test_tally.py).

Layouts: include/uapi/linux/netlink.h (struct nlmsghdr, 16 bytes),
include/uapi/linux/inet_diag.h (struct inet_diag_msg at offset 16: state at
17, idiag_sport at 20, idiag_cookie at 60, idiag_inode at 84),
include/uapi/linux/tcp.h (tcpi_last_ack_recv at offset 56 of struct tcp_info).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from array import array
from collections.abc import Callable, Sequence
from dataclasses import field

from ..kernel import netlink
from ..kernel.sock_diag import build_dump_request
from ..model.socket import Owner, Socket
from ..model.states import ALL_STATES, TcpState
from ..records import record
from . import diag_replies
from .inode_table import _GOLDEN, _MASK64, SHARED, InodeTable
from .netns import Namespace
from .owner_cache import OwnerCache

LISTEN = int(TcpState.LISTEN)
CLOSE_WAIT = int(TcpState.CLOSE_WAIT)
SYN_RECV_STATES = (int(TcpState.SYN_RECV), int(TcpState.NEW_SYN_RECV))
COUNTED_MASK = ALL_STATES & ~(1 << LISTEN | 1 << CLOSE_WAIT)

# nlmsg_len, nlmsg_type, state, idiag_sport, idiag_inode: the smallest reply
# (a mini socket's, no attribute) is exactly this long
_COUNTED = struct.Struct("=IH11xB2xH62xI")
_BY_FAMILY = netlink.SOCK_DIAG_BY_FAMILY
_PAD = 4096  # room after a recv for one unpack past its end (a message is < 1 KiB)
_TCPI_LAST_ACK_RECV = 56
_TCP_INFO_MIN = 104  # the first group (collect.diag_replies): older is not decoded there either
_BASE = "=IH11xB42xII16xI"  # len, type, state, cookie lo, cookie hi, inode (88 bytes)
_BASE_STRUCT = struct.Struct(_BASE)


@record
class Tally:
    """One streamed sample's counts (pids from the owner cache's table)."""

    states: dict[tuple[str, int], int] = field(default_factory=dict)  # (netns, state) -> n
    # ^ and pid_states: every socket but the LISTEN ones, which are in `listeners`
    pid_states: dict[int, int] = field(default_factory=dict)  # pid * 16 + state -> n
    syn_recv: dict[tuple[str, int], int] = field(default_factory=dict)  # (netns, port) -> n
    listeners: list[Socket] = field(default_factory=list)  # owners set
    cw_cookies: array = field(default_factory=lambda: array("Q"))
    cw_pids: array = field(default_factory=lambda: array("q"))  # first holder's pid, 0: none
    cw_ages: array = field(default_factory=lambda: array("d"))  # NaN: no tcp_info
    oldest: dict[int, float] = field(default_factory=dict)  # pid -> oldest CLOSE_WAIT age
    hits: dict[int, int] = field(default_factory=dict)  # pid -> holders matched (OwnerCache)


@record
class _Missed:
    """A socket whose inode the table did not know, kept for OwnerCache.recover."""

    netns: str
    state: int
    inode: int
    cookie: int = 0
    age: float | None = None


def _messages(sock: socket.socket, request: bytes, buf: bytearray
              ) -> Callable[[], int]:
    """recv_into `buf` after sending `request`: returns the reader (bytes read)."""
    sock.send(request)
    size = len(buf) - _PAD

    def read() -> int:
        n = sock.recv_into(buf, size)
        if not n:
            raise netlink.NetlinkError(errno.EIO, "netlink socket closed mid-dump")
        return n
    return read


def _control(buf: bytearray, off: int, mtype: int) -> bool:
    """A non-socket message: True at the end of the dump; raises on an error."""
    if mtype == netlink.NLMSG_DONE:
        return True
    if mtype == netlink.NLMSG_ERROR:
        code = netlink.error_code(bytes(buf[off:off + 20]), 0)
        if code:
            raise netlink.NetlinkError(code, os.strerror(code))
        return True
    return False


class _Counter:
    """The per-namespace loops; one per Tally, holding the table's arrays in locals."""

    def __init__(self, tally: Tally, table: InodeTable,
                 owners_of: Callable[[int], tuple[Owner, ...]]) -> None:
        self.tally = tally
        self.table = table
        self.missed: list[_Missed] = []
        self.shared_hits: dict[int, int] = {}
        self.buf = bytearray(netlink.RECV_BUFSIZE + _PAD)
        self._cw_layouts: dict[int, tuple[Callable, int] | None] = {}
        self.owners_of = owners_of
        self.listen_hits: dict[int, int] = {}
        self.missed_listeners: list[Socket] = []

    def counted(self, sock: socket.socket, family: int, netns: str) -> None:
        """Every state but LISTEN and CLOSE_WAIT: state, port, inode of each."""
        read = _messages(sock, build_dump_request(family, COUNTED_MASK), self.buf)
        buf = self.buf
        unpack = _COUNTED.unpack_from
        per_state = [0] * 16
        syn: dict[int, int] = {}
        by_pid = self.tally.pid_states
        table = self.table
        keys, values, shift, mask = table.keys, table.values, table.shift, table.mask
        golden, mask64 = _GOLDEN, _MASK64
        missed = self.missed
        syn_states = SYN_RECV_STATES
        while True:
            n = read()
            off = 0
            while off < n:
                length, mtype, state, sport, inode = unpack(buf, off)
                if length < 16:
                    raise netlink.NetlinkError(errno.EBADMSG, f"netlink message of {length} bytes")
                if mtype != _BY_FAMILY:
                    if _control(buf, off, mtype):
                        self._fold_counts(netns, per_state, syn)
                        return
                    off += (length + 3) & ~3
                    continue
                off += (length + 3) & ~3
                per_state[state & 15] += 1
                if state in syn_states:
                    syn[sport] = syn.get(sport, 0) + 1
                    continue
                if not inode:
                    continue
                # InodeTable.holders, inlined: this is the loop of a million sockets
                i = ((inode * golden) & mask64) >> shift
                key = keys[i]
                while key != inode:
                    if not key:
                        break
                    i = (i + 1) & mask
                    key = keys[i]
                if not key:
                    missed.append(_Missed(netns, state, inode))
                    continue
                held = values[i]
                if held != SHARED:
                    k = (held >> 32) * 16 + state
                    by_pid[k] = by_pid.get(k, 0) + 1
                else:
                    self._count_shared(table.shared[inode], state)

    def _fold_counts(self, netns: str, per_state: list[int], syn: dict[int, int]) -> None:
        states = self.tally.states
        for st, count in enumerate(per_state):
            if count:
                states[netns, st] = states.get((netns, st), 0) + count
        ntohs = diag_replies._NTOHS
        syn_recv = self.tally.syn_recv
        for port, count in syn.items():
            key = (netns, ntohs[port])
            syn_recv[key] = syn_recv.get(key, 0) + count

    def _count_shared(self, holders: Sequence[int], state: int, age: float | None = None) -> int:
        """Count a socket once for each pid among several holders, and (CLOSE_WAIT)
        its `age` towards each one's oldest; returns the first holder's pid. Every
        holder counts as a hit (as attach does)."""
        by_pid, oldest = self.tally.pid_states, self.tally.oldest
        seen: set[int] = set()
        extra = self.shared_hits  # hits beyond the one per pid that pid_states holds
        for h in holders:
            pid = h >> 32
            if age is not None and (pid not in oldest or age > oldest[pid]):
                oldest[pid] = age
            if pid in seen:
                extra[pid] = extra.get(pid, 0) + 1
                continue
            seen.add(pid)
            k = pid * 16 + state
            by_pid[k] = by_pid.get(k, 0) + 1
        return holders[0] >> 32

    def _cw_layout(self, length: int, off: int) -> tuple[Callable, int] | None:
        """(unpack_from, the nla_len it must read) of the Struct that reads the
        fixed fields, INET_DIAG_INFO's header and last_ack_recv from messages
        of this length, learnt from the one at `off`."""
        if length in self._cw_layouts:
            return self._cw_layouts[length]
        layout = None
        for nla_type, start, size in diag_replies._attributes(self.buf, off + 88,
                                                           off + length):
            if nla_type == diag_replies.INET_DIAG_INFO and size >= _TCP_INFO_MIN:
                header = start - 4 - off
                st = struct.Struct(f"{_BASE}{header - 88}xHH{_TCPI_LAST_ACK_RECV}xI")
                if st.size <= _PAD:  # it may read past the last message of a recv
                    layout = (st.unpack_from, size + 4)
                break
        self._cw_layouts[length] = layout
        return layout

    def close_wait(self, sock: socket.socket, family: int, netns: str) -> None:
        """CLOSE_WAIT with tcp_info: cookie, inode, the age estimate of each."""
        read = _messages(sock, build_dump_request(family, 1 << CLOSE_WAIT, diag_replies.EXT_INFO), self.buf)
        buf = self.buf
        by_pid, oldest = self.tally.pid_states, self.tally.oldest
        cookies, pids, ages = self.tally.cw_cookies, self.tally.cw_pids, self.tally.cw_ages
        table = self.table
        keys, values, shift, mask = table.keys, table.values, table.shift, table.mask
        golden, mask64 = _GOLDEN, _MASK64
        info, nan = diag_replies.INET_DIAG_INFO, float("nan")
        count, last, want = 0, -1, 0  # last, want: the length whose layout `fast` reads, its nla_len
        fast: Callable | None = None
        while True:
            n, off = read(), 0
            while off < n:
                v = fast(buf, off) if fast is not None else None
                if v is not None and v[0] == last and v[1] == _BY_FAMILY and v[6] == want \
                        and v[7] == info:  # the common case: one unpack a socket
                    length, state, lo, hi, inode, age = last, v[2], v[3], v[4], v[5], v[8] / 1000
                else:
                    other = self._cw_other(off)
                    if other is None:  # the end of the dump
                        self._fold_close_wait(netns, count)
                        return
                    length, state, lo, hi, inode, age = other
                    if state < 0:  # not a socket
                        off += (length + 3) & ~3
                        continue
                    fast, want = self._cw_layout(length, off) or (None, 0)
                    last = length
                off += (length + 3) & ~3
                count += 1
                cookie = hi << 32 | lo
                pid = 0
                if inode:
                    # InodeTable.holders, inlined (as in counted)
                    i = ((inode * golden) & mask64) >> shift
                    key = keys[i]
                    while key != inode:
                        if not key:
                            break
                        i = (i + 1) & mask
                        key = keys[i]
                    if not key:
                        self.missed.append(_Missed(netns, state, inode, cookie, age))
                        continue
                    held = values[i]
                    if held != SHARED:
                        pid = held >> 32
                        k = pid * 16 + state
                        by_pid[k] = by_pid.get(k, 0) + 1
                        if age is not None and (pid not in oldest or age > oldest[pid]):
                            oldest[pid] = age
                    else:
                        pid = self._count_shared(table.shared[inode], state, age)
                if cookie:
                    cookies.append(cookie)
                    pids.append(pid)
                    ages.append(nan if age is None else age)

    def _cw_other(self, off: int) -> tuple[int, int, int, int, int, float | None] | None:
        """A message close_wait's fast layout did not read (the first of its length,
        another layout, or no tcp_info): (length, state, cookie lo, hi, inode, age);
        state -1: not a socket; None at the end of the dump."""
        length, mtype, state, lo, hi, inode = _BASE_STRUCT.unpack_from(self.buf, off)
        if length < 16:
            raise netlink.NetlinkError(errno.EBADMSG, f"netlink message of {length} bytes")
        if mtype != _BY_FAMILY:
            return None if _control(self.buf, off, mtype) else (length, -1, 0, 0, 0, None)
        return length, state, lo, hi, inode, self._age_slow(off, length)

    def _fold_close_wait(self, netns: str, count: int) -> None:
        if count:
            states = self.tally.states
            states[netns, CLOSE_WAIT] = states.get((netns, CLOSE_WAIT), 0) + count

    def _older(self, pid: int, age: float) -> None:
        oldest = self.tally.oldest
        if pid not in oldest or age > oldest[pid]:
            oldest[pid] = age

    def _age_slow(self, off: int, length: int) -> float | None:
        """A message whose attributes are not where its length's layout says."""
        for nla_type, start, size in diag_replies._attributes(self.buf, off + 88,
                                                           off + length):
            if nla_type == diag_replies.INET_DIAG_INFO and size >= _TCP_INFO_MIN:
                return struct.unpack_from("=I", self.buf, start + _TCPI_LAST_ACK_RECV)[0] / 1000
        return None

    def listen(self, sock: socket.socket, family: int, netns: str,
               addresses: diag_replies.AddressCache) -> None:
        """LISTEN sockets in full (few); their holders as Owners."""
        getter = self.owners_of
        hits = self.listen_hits
        t = self.tally
        for s in diag_replies.dump_sockets(sock, family, 1 << LISTEN, 0, b"", netns, addresses):
            if s.inode:
                s.owners = getter(s.inode)
                if not s.owners:
                    self.missed_listeners.append(s)
                    continue
                for o in s.owners:
                    hits[o.pid] = hits.get(o.pid, 0) + 1
            t.listeners.append(s)

    def settle(self, cache: OwnerCache) -> None:
        """The sockets whose inode the table did not know: back to the cache
        (OwnerCache.recover), then counted with what it found."""
        t = self.tally
        hits: dict[int, int] = {}
        for k, count in t.pid_states.items():
            hits[k >> 4] = hits.get(k >> 4, 0) + count
        for extra in (self.shared_hits, self.listen_hits):
            for pid, count in extra.items():
                hits[pid] = hits.get(pid, 0) + count
        inodes = [m.inode for m in self.missed] + [s.inode for s in self.missed_listeners]
        found = cache.recover(inodes, hits)
        by_pid = t.pid_states
        for m in self.missed:
            owners = found.get(m.inode, ())
            pid = owners[0].pid if owners else 0
            for p in dict.fromkeys(o.pid for o in owners):
                k = p * 16 + m.state
                by_pid[k] = by_pid.get(k, 0) + 1
                if m.age is not None:
                    self._older(p, m.age)
            if m.state == CLOSE_WAIT and m.cookie:
                t.cw_cookies.append(m.cookie)
                t.cw_pids.append(pid)
                t.cw_ages.append(float("nan") if m.age is None else m.age)
        for s in self.missed_listeners:
            s.owners = found.get(s.inode, ())
            t.listeners.append(s)
        t.hits = hits


def take(readers: Sequence[tuple[Namespace, socket.socket]], cache: OwnerCache) -> Tally:
    """Tally the sockets of each (namespace, open sock_diag socket), holders from
    `cache` as its last refresh() left it. The sockets are not closed here."""
    owner_map = cache.owner_map if cache.owner_map is not None else cache.refresh()
    holders = owner_map.owners
    tally = Tally()
    counter = _Counter(tally, holders.table, holders.getter())
    addresses = diag_replies.AddressCache()
    for ns, sock in readers:
        for family in (socket.AF_INET, socket.AF_INET6):
            counter.counted(sock, family, ns.name)
            counter.close_wait(sock, family, ns.name)
            counter.listen(sock, family, ns.name, addresses)
    counter.settle(cache)
    return tally
