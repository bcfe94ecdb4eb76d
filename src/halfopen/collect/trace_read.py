"""The connection-end events, read from a private tracefs instance.

`TraceReader.open()` mounts tracefs if needed, removes instances a killed
halfopen left, makes `instances/halfopen-<pid>`, sets its clock to CLOCK_MONOTONIC
(`mono`), enables the events below with their filters set in the kernel, and
opens the per-CPU binary pipes; `poll()` returns what the kernel wrote since,
decoded and ordered by time; `close()` removes the instance and unmounts what
it mounted. Layouts come from each event's format file (kernel.tracefs): a
decoder is one struct.unpack_from per event, built from those offsets.

Why the binary pipes and not trace_pipe: the kernel then formats no text
(tracing_buffers_read copies pages), one read moves a page of about 50 events,
and a page's header says when events were lost before it (BENCHMARKS.md).

Events (include/trace/events/sock.h, tcp.h; syscalls from the syscall table):

| event | since | what it gives |
|---|---|---|
| sock:inet_sock_set_state | 4.16 | skaddr, old/new state, addresses; fires in softirq: common_pid is not the owner |
| tcp:tcp_send_reset | 4.15 | skaddr (0: no socket), state, `reason` (6.10), addresses |
| tcp:tcp_receive_reset | 4.15 | skaddr, addresses, sock_cookie (5.6) |
| tcp:tcp_retransmit_skb | 4.15 | skaddr, state, addresses |
| tcp:tcp_destroy_sock | 4.15 | skaddr, sock_cookie (5.6): the socket's end |
| syscalls:sys_enter_close | | common_pid (a thread id) and fd: the owner's own call |

close() is read in a second instance, `instances/halfopen-<pid>-close`, whose
`set_event_pid` holds the threads of the processes that own the sockets followed
(`follow`), with `options/event-fork` so their new threads are added (and
exited ones dropped) by the kernel itself. Without it every close() of the host
reaches the buffer: on a busy host that alone overflows it (tens of thousands
of events lost a second). A filter on `common_pid` could not do this: it is the
thread id (the kernel's filters have no tgid field), a thread made after the
filter was written would be missed, and the filter text is bounded by a page.
`set_event_pid` cannot go on the main instance: the state changes fire in
softirq context on whatever task was running, and would be filtered by it.
The close() event is enabled only once some process is followed (an empty
`set_event_pid` means every task).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from ..kernel import tracefs
from ..records import record

# kinds of decoded events (the first two items of each tuple are (ts_ns, KIND))
STATE, RESET_SENT, RESET_RECEIVED, RETRANSMIT, DESTROY, CLOSE = range(6)

EVENTS = (
    ("sock", "inet_sock_set_state", STATE),
    ("tcp", "tcp_send_reset", RESET_SENT),
    ("tcp", "tcp_receive_reset", RESET_RECEIVED),
    ("tcp", "tcp_retransmit_skb", RETRANSMIT),
    ("tcp", "tcp_destroy_sock", DESTROY),
    ("syscalls", "sys_enter_close", CLOSE),
)

# State changes kept in the kernel: a connection's start (-> ESTABLISHED), its
# end seen from ESTABLISHED or CLOSE_WAIT, and its last step (-> CLOSE, which
# also says what state a reset found). TCP only (not SCTP, MPTCP).
STATE_FILTER = "protocol == 6 && (oldstate == 1 || newstate == 1 || oldstate == 8 || newstate == 7)"

_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
          (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


def _struct_for(fmt: tracefs.EventFormat, names: list[str]) -> tuple[struct.Struct, list[str]]:
    """One Struct reading `names` (those the format has) at the format's offsets."""
    present = sorted((fmt.fields[n] for n in names if n in fmt.fields), key=lambda f: f.offset)
    code, pos = "=", 0
    for f in present:
        if f.offset < pos:
            raise ValueError(f"{fmt.name}: field {f.name} overlaps the one before it")
        code += f"{f.offset - pos}x" if f.offset > pos else ""
        code += f"{f.size}s" if f.array or (f.size, f.signed) not in _CODES else _CODES[f.size, f.signed]
        pos = f.offset + f.size
    return struct.Struct(code), [f.name for f in present]


class _Addresses:
    """Address bytes -> text, memoized (a busy host talks to few peers)."""

    def __init__(self) -> None:
        self.v4: dict[bytes, str] = {}
        self.v6: dict[bytes, str] = {}

    def text(self, family: int, raw: bytes) -> str:
        if family == socket.AF_INET6:
            got = self.v6.get(raw)
            if got is None:
                got = self.v6[raw] = socket.inet_ntop(socket.AF_INET6, raw[:16])
            return got
        got = self.v4.get(raw)
        if got is None:
            got = self.v4[raw] = socket.inet_ntop(socket.AF_INET, raw[:4])
        return got

    def pair(self, v: dict[str, Any]) -> tuple[str, int, str, int] | None:
        """(src, sport, dst, dport) from either layout: the sockaddr arrays of
        tcp_send_reset (6.x: saddr[28]) or family, ports and saddr/saddr_v6."""
        saddr = v.get("saddr")
        if isinstance(saddr, bytes) and len(saddr) >= 24:  # struct sockaddr_in6 sized
            family = int.from_bytes(saddr[:2], "little")
            daddr = v["daddr"]
            if family == socket.AF_INET:
                return (self.text(family, saddr[4:8]), int.from_bytes(saddr[2:4], "big"),
                        self.text(family, daddr[4:8]), int.from_bytes(daddr[2:4], "big"))
            if family == socket.AF_INET6:
                return (self.text(family, saddr[8:24]), int.from_bytes(saddr[2:4], "big"),
                        self.text(family, daddr[8:24]), int.from_bytes(daddr[2:4], "big"))
            return None
        family = int(v.get("family") or 0)
        if family == socket.AF_INET6:
            return (self.text(family, v["saddr_v6"]), v["sport"],
                    self.text(family, v["daddr_v6"]), v["dport"])
        if family == socket.AF_INET and saddr is not None:
            return (self.text(family, saddr), v["sport"], self.text(family, v["daddr"]), v["dport"])
        return None


_ADDR_FIELDS = ["family", "sport", "dport", "saddr", "daddr", "saddr_v6", "daddr_v6"]
_WANTED = {
    STATE: ["skaddr", "oldstate", "newstate", *_ADDR_FIELDS],
    RESET_SENT: ["skaddr", "state", "reason", *_ADDR_FIELDS],
    RESET_RECEIVED: ["skaddr", "sock_cookie", *_ADDR_FIELDS],
    RETRANSMIT: ["skaddr", "state", *_ADDR_FIELDS],
    DESTROY: ["skaddr", "sock_cookie", *_ADDR_FIELDS],
    CLOSE: ["common_pid", "fd"],
}


def make_decoder(kind: int, fmt: tracefs.EventFormat, addrs: _Addresses) -> Callable[[bytes, int, int], tuple]:
    """(page, payload offset, ts) -> (ts, kind, skaddr, src, sport, dst, dport, a, b).

    a, b by kind: STATE (oldstate, newstate); RESET_SENT (state, reason name or
    None); RESET_RECEIVED and DESTROY (sock_cookie or None, None); RETRANSMIT
    (state, None); CLOSE: skaddr 0, no addresses, (tid, fd).
    """
    st, names = _struct_for(fmt, _WANTED[kind])
    unpack = st.unpack_from
    reasons = {v: name.lower() for v, name in fmt.symbols.get("reason", {}).items()}
    pair = addrs.pair

    if kind == CLOSE:
        def close(page: bytes, off: int, ts: int) -> tuple:
            v = dict(zip(names, unpack(page, off)))
            return (ts, CLOSE, 0, None, 0, None, 0, v.get("common_pid"), v.get("fd"))
        return close

    if kind == STATE and names[:3] == ["skaddr", "oldstate", "newstate"]:
        # the hot path: positional, no dict
        i_fam = names.index("family")
        i_sa, i_da = names.index("saddr"), names.index("daddr")
        i_s6, i_d6 = names.index("saddr_v6"), names.index("daddr_v6")
        i_sp, i_dp = names.index("sport"), names.index("dport")
        v4 = addrs.v4
        text = addrs.text

        def state(page: bytes, off: int, ts: int) -> tuple:
            t = unpack(page, off)
            if t[i_fam] == socket.AF_INET:
                s, d = v4.get(t[i_sa]), v4.get(t[i_da])
                if s is None:
                    s = text(socket.AF_INET, t[i_sa])
                if d is None:
                    d = text(socket.AF_INET, t[i_da])
            else:
                s, d = text(socket.AF_INET6, t[i_s6]), text(socket.AF_INET6, t[i_d6])
            return (ts, STATE, t[0], s, t[i_sp], d, t[i_dp], t[1], t[2])
        return state

    def generic(page: bytes, off: int, ts: int) -> tuple:
        v = dict(zip(names, unpack(page, off)))
        p = pair(v) or (None, 0, None, 0)
        if kind == STATE:
            a, b = v["oldstate"], v["newstate"]
        elif kind == RESET_SENT:
            r = v.get("reason")
            a, b = v.get("state", 0), (reasons.get(r, f"reason_{r}") if r is not None else None)
        elif kind in (RESET_RECEIVED, DESTROY):
            a, b = v.get("sock_cookie"), None
        else:
            a, b = v.get("state", 0), None
        return (ts, kind, v.get("skaddr", 0), p[0], p[1], p[2], p[3], a, b)
    return generic


MAX_FOLLOWED = 1024  # owner processes whose close() is read; past it, a note


def thread_ids(pid: int, proc: str = "/proc") -> list[int]:
    """The thread ids of `pid` now (empty if it is gone)."""
    try:
        return [int(t) for t in os.listdir(f"{proc}/{pid}/task") if t.isdigit()]
    except OSError:
        return []


@record
class TraceOptions:
    port: int | None = None  # kept in the kernel: either end's port
    # close() only from these processes (their threads, and threads they make later);
    # empty: from the owners of the sockets followed, as `follow` learns them
    pids: tuple[int, ...] = ()
    tracefs: str = tracefs.TRACEFS  # where to mount it when it is nowhere


class TraceReader:
    """An open instance and its per-CPU pipes (see the module docstring)."""

    def __init__(self, root: str, mounted: bool, instance: tracefs.Instance) -> None:
        self.root = root
        self.mounted = mounted
        self.instance = instance
        self.notes: list[str] = []
        self.stale_removed: list[str] = []
        self.decoders: dict[int, Callable[[bytes, int, int], tuple]] = {}
        self.enabled: list[str] = []
        self.fds: list[int] = []
        self.layout: tracefs.PageLayout | None = None
        self.missed_pages = 0
        self.events_read = 0  # events decoded, before any joining or dropping  # pages whose header said events were lost before them
        self.mono_to_epoch = time.time() - time.monotonic()
        self.clock_ok = False
        self.record_tgid = False
        self.closes: tracefs.Instance | None = None  # the close() instance (module docstring)
        self.followed: set[int] = set()  # processes whose close() calls are read
        self.fixed = False  # options.pids given: follow() adds nothing
        self.close_enabled = False
        self.capped = False  # MAX_FOLLOWED reached

    @classmethod
    def open(cls, options: TraceOptions) -> TraceReader:
        root, mounted = tracefs.mount_tracefs(options.tracefs)
        try:
            stale = tracefs.remove_stale(root)
            instance = tracefs.Instance.create(root, f"{tracefs.PREFIX}{os.getpid()}")
        except BaseException:
            if mounted:
                _unmount_ours(root)
            raise
        reader = cls(root, mounted, instance)
        reader.stale_removed = stale
        try:
            reader.closes = tracefs.Instance.create(root, f"{tracefs.PREFIX}{os.getpid()}{tracefs.CLOSE_SUFFIX}")
            reader._setup(options)
        except BaseException:
            reader.close()
            raise
        return reader

    def _setup(self, options: TraceOptions) -> None:
        inst = self.instance
        with open(f"{self.root}/events/header_page", encoding="utf-8") as f:
            self.layout = tracefs.parse_header_page(f.read())
        closes = self.closes
        assert closes is not None
        try:
            for i in (inst, closes):  # one clock for both: their events are merged by time
                i.write("trace_clock", "mono")  # CLOCK_MONOTONIC: to wall time by one offset
            self.clock_ok = True
        except OSError:
            self.notes.append("trace clock 'mono' not offered: event times are approximate")
        try:
            # the kernel notes each traced thread's process (tgid_map, read back from
            # saved_tgids): a close() from a thread gone by the time it is read still
            # finds its process
            closes.write("options/record-tgid", "1")
            self.record_tgid = True
        except OSError:
            self.notes.append("no record-tgid option: close() by threads that exit at once is not seen")
        addrs = _Addresses()
        ports = f"(sport == {options.port} || dport == {options.port})" if options.port else ""
        for system, event, kind in EVENTS:
            try:
                fmt = inst.event_format(system, event)
            except FileNotFoundError:
                self.notes.append(f"this kernel has no {system}:{event} tracepoint: its events are not seen")
                continue
            filt = None
            if kind == STATE:
                filt = STATE_FILTER + (f" && {ports}" if ports else "")
            elif kind in (RESET_RECEIVED, RETRANSMIT, DESTROY) and ports and "sport" in fmt.fields:
                filt = ports
            if kind == RESET_SENT and "reason" not in fmt.fields:
                self.notes.append("tcp_send_reset has no reason field (before 6.10): reasons are null")
            self.decoders[fmt.id] = make_decoder(kind, fmt, addrs)
            if kind == CLOSE:
                self._close_setup(options)
                continue
            inst.enable(system, event, filt)
            self.enabled.append(f"{system}:{event}")
        self.fds = [i.open_raw(cpu) for i in (inst, closes) for cpu in i.cpus()]
        if options.pids:
            self.follow(options.pids)
            self.fixed = True

    def _close_setup(self, options: TraceOptions) -> None:
        """The close() instance: event-fork on, the event enabled by the first follow()."""
        assert self.closes is not None
        try:
            self.closes.write("options/event-fork", "1")
        except OSError:
            self.notes.append("no event-fork option: close() by threads made after a process "
                              "was followed is not seen")
        self.enabled.append("syscalls:sys_enter_close")

    def follow(self, pids: set[int] | tuple[int, ...]) -> None:
        """Read close() from these processes too: their threads are added to the close()
        instance's set_event_pid (the kernel adds the threads they make later)."""
        if self.fixed or self.closes is None or "syscalls:sys_enter_close" not in self.enabled:
            return
        new = [p for p in pids if p not in self.followed]
        if not new:
            return
        room = MAX_FOLLOWED - len(self.followed)
        if len(new) > room:
            if not self.capped:
                self.capped = True
                self.notes.append(f"close() read from the first {MAX_FOLLOWED} owner processes only")
            new = new[:room]
        tids = [t for p in new for t in thread_ids(p)]
        self.followed.update(new)
        if not tids:
            return
        self.closes.append("set_event_pid", " ".join(map(str, tids)))
        if not self.close_enabled:
            self.closes.write("events/syscalls/sys_enter_close/enable", "1")
            self.close_enabled = True

    def poll(self) -> list[tuple]:
        """Every event the buffers hold now, decoded, oldest first (merged across CPUs)."""
        assert self.layout is not None
        layout = self.layout
        size = layout.page_size
        decoders = self.decoders
        out: list[tuple] = []
        append = out.append
        common_type = struct.Struct("=H").unpack_from
        for fd in self.fds:
            for page in tracefs.read_pages(fd, size):
                events, missed = tracefs.page_events(page, layout)
                if missed:
                    self.missed_pages += 1
                for ts, off, _length in events:
                    dec = decoders.get(common_type(page, off)[0])
                    if dec is not None:
                        append(dec(page, off, ts))
        self.events_read += len(out)
        if len(self.fds) > 1:
            out.sort(key=lambda e: e[0])
        return out

    def saved_tgids(self) -> dict[int, int]:
        """tid -> tgid as the kernel recorded them (record-tgid); empty without it."""
        if not self.record_tgid:
            return {}
        try:
            return tracefs.parse_pairs(tracefs.read_text(f"{self.root}/saved_tgids"))
        except OSError:
            return {}

    def epoch(self, ts_ns: int) -> float:
        return ts_ns / 1e9 + self.mono_to_epoch

    def lost(self) -> int:
        """The kernel's count of events lost (overrun + dropped) in both instances."""
        return self.instance.lost() + (self.closes.lost() if self.closes is not None else 0)

    def close(self) -> None:
        """Close the pipes, remove the instance, unmount what open() mounted."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        try:
            for name in self.enabled:  # not needed by rmdir, but stops the writers at once
                system, event = name.split(":")
                owner = self.closes if event == "sys_enter_close" else self.instance
                if owner is not None:
                    owner.write(f"events/{system}/{event}/enable", "0")
        except OSError:
            pass
        self.enabled = []
        if self.closes is not None:
            self.closes.remove()
            self.closes = None
        self.instance.remove()
        if self.mounted:
            self.mounted = False
            _unmount_ours(self.root)


def _unmount_ours(root: str) -> None:
    """Unmount the tracefs we mounted, unless someone took it up meanwhile: EBUSY is
    another tracer (a second halfopen, trace-cmd) with a file of it open, and the
    mount stays theirs."""
    try:
        tracefs.unmount(root)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
