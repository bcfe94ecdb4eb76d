"""Renderers for `halfopen sockets`: table, JSON, JSON lines, CSV, summary."""

from __future__ import annotations

import contextlib
import csv
import json
import marshal
import operator
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO

from ..model.socket import SKMEM_FIELDS, TCP_INFO_FIELDS, TIMER_NAMES, Socket
from ..model.states import SS_NAMES, STATE_KEYS, TcpState, state_name
from ..model.text import shown
from .format import duration_ms, endpoint, table

SCHEMA = "halfopen.sockets/1"
_encode = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring_ascii  # C; for the only free-form strings

# The JSON of Socket.to_dict(), formatted directly: a dict per socket and
# json's encoder cost three times the whole kernel dump at 100k sockets.
# Keys, order and bytes are those of json.dumps(to_dict(), separators=(",", ":"))
# (tests/unit/test_encode.py compares both). One % per line: the format is
# built once per shape of line (namespace, state, timer, direction and
# shutdown written into it as text; number of holders; tcp_info and meminfo
# fields present), and the numbers and addresses go in one tuple, fetched by
# one attrgetter.
_OWNER = '{"pid":%d,"comm":%s,"fd":%d%s}'  # the last %s: ',"container":{..}' or ""
_DIRECTION_JSON = {None: "null", "in": '"in"', "out": '"out"'}
_STATE_TEXT = {int(k): v for k, v in STATE_KEYS.items()}
_shape_of = operator.attrgetter("netns", "state", "timer", "direction", "shutdown")
_values_of = operator.attrgetter("family", "recv_q", "send_q", "local_addr", "local_port",
                                 "peer_addr", "peer_port", "timer_expires_ms",
                                 "timer_retrans", "uid", "inode", "cookie")


def _object_format(names: tuple[str, ...], count: int) -> str:
    return "{" + ",".join(f'"{n}":%d' for n in names[:count]) + "}"


_TCP_INFO_FORMATS = [_object_format(TCP_INFO_FIELDS, n) for n in range(len(TCP_INFO_FIELDS) + 1)]
_MEMINFO_FORMATS = [_object_format(SKMEM_FIELDS, n) for n in range(len(SKMEM_FIELDS) + 1)]


def _present(values: tuple) -> tuple:
    """The leading non-None values (the decoder pads missing groups with None)."""
    n = len(values)
    while n and values[n - 1] is None:
        n -= 1
    return values[:n]


_comm_json: dict[str, str] = {}  # comm -> its JSON string, bounded below
_COMM_LIMIT = 4096
_formats: dict[tuple, str] = {}  # shape -> format, bounded below
_FORMAT_LIMIT = 4096


def _line_format(shape: tuple) -> str:
    """The whole line's format for a shape: (netns, state, timer, direction,
    shutdown, holders, tcp_info fields, meminfo fields; -1: absent)."""
    netns, state, timer, direction, shutdown, holders, n_info, n_mem = shape
    state_text = _STATE_TEXT.get(state) or state_name(state)
    fmt = ('{"netns":' + _quote(netns).replace("%", "%%")
           + ',"family":%d,"state":"' + state_text.replace("%", "%%")
           + '","recv_q":%d,"send_q":%d,"local_addr":"%s","local_port":%d,'
           '"peer_addr":"%s","peer_port":%d,"timer":"' + TIMER_NAMES.get(timer, "unknown")
           + '","timer_expires_ms":%d,"timer_retrans":%d,"uid":%d,"inode":%d,"cookie":%d,'
           '"direction":' + _DIRECTION_JSON[direction])
    if shutdown is not None:
        fmt += ',"shutdown":%d' % shutdown
    if holders:
        fmt += ',"owners":[' + ",".join([_OWNER] * holders) + "]"
    if n_info >= 0:
        fmt += ',"tcp_info":' + _TCP_INFO_FORMATS[n_info]
    if n_mem >= 0:
        fmt += ',"meminfo":' + _MEMINFO_FORMATS[n_mem]
    if len(_formats) >= _FORMAT_LIMIT:
        _formats.clear()
    _formats[shape] = fmt = fmt + "}"
    return fmt


def _quote_comm(comm: str) -> str:
    if len(_comm_json) >= _COMM_LIMIT:
        _comm_json.clear()
    quoted = _comm_json[comm] = _quote(comm)
    return quoted


def encode_socket(s: Socket) -> str:
    """json.dumps(s.to_dict(), separators=(",", ":")) without building the dict."""
    values = _values_of(s)
    owners = s.owners
    for o in owners:
        values += (o.pid, _comm_json.get(o.comm) or _quote_comm(o.comm), o.fd,
                   "" if o.container is None
                   else ',"container":' + _encode(o.container.to_dict()))
    n_info = n_mem = -1
    ti: tuple | None = s.tcp_info
    if ti is not None:
        if ti[-1] is None:
            ti = _present(ti)
        n_info = len(ti)
        values += ti
    mi: tuple | None = s.meminfo
    if mi is not None:
        if mi[-1] is None:
            mi = _present(mi)
        n_mem = len(mi)
        values += mi
    shape = _shape_of(s) + (len(owners), n_info, n_mem)
    return (_formats.get(shape) or _line_format(shape)) % values


# Names as the table shows them (model.text.shown): a process named
# "\x1b[2J" or "a\nb" would otherwise repaint the terminal or split its row.
# Cached, as _comm_json is: a million rows share a few hundred names.
_comm_shown: dict[str, str] = {}


def _shown(name: str) -> str:
    cached = _comm_shown.get(name)
    if cached is None:
        if len(_comm_shown) >= _COMM_LIMIT:
            _comm_shown.clear()
        cached = _comm_shown[name] = shown(name)
    return cached


def containers_text(sock: Socket) -> str:
    """The Container column: each holder's container once ('' on the host), shown()."""
    boxes = [o.container for o in sock.owners if o.container is not None]
    if not boxes:
        return ""
    return ",".join(dict.fromkeys(_shown(c.text()) for c in boxes))


def owners_text(sock: Socket) -> str:
    """The Process column: 'nginx(812,fd=6)' for each holder, the name shown()."""
    return ",".join(f"{_shown(o.comm)}({o.pid},fd={o.fd})" for o in sock.owners)


def timer_text(sock: Socket) -> str:
    if sock.timer == 0:
        return ""
    return f"{sock.timer_name},{duration_ms(sock.timer_expires_ms)},{sock.timer_retrans}"


def state_text(state: int) -> str:
    try:
        return SS_NAMES[TcpState(state)]
    except ValueError:
        return str(state)


# Rows kept in memory to align the table; past this many they go to an
# unlinked temporary file (marshal, one row after another) and only the
# column widths stay in memory, so a million sockets cost no more RAM than ten
# thousand. The table is aligned exactly as before either way.
SPILL_ROWS = 10_000


def _table_header(info: bool, show_netns: bool) -> list[str]:
    header = ["State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Dir",
              "Timer"]
    if info:
        header += ["Idle-Recv", "Idle-Send", "Last-Ack", "Unacked", "Retrans", "RTO"]
    header.append("Process")
    if show_netns:
        header.insert(0, "Netns")
    header.append("Container")  # dropped when no row has one
    return header


def write_table(sockets: Iterable[Socket], out: IO[str], info: bool, show_netns: bool,
                spill_rows: int = SPILL_ROWS) -> int:
    header = _table_header(info, show_netns)
    widths = [len(h) for h in header]
    rows: list[list[str]] = []
    spill = None
    n = 0
    boxes = False
    with contextlib.ExitStack() as stack:
        for s in sockets:
            row = [state_text(s.state), str(s.recv_q), str(s.send_q),
                   endpoint(s.local_addr, s.local_port), endpoint(s.peer_addr, s.peer_port),
                   s.direction or "", timer_text(s)]
            if info:
                ti = s.tcp_info
                if ti is None:
                    row += ["-"] * 6
                else:
                    row += [duration_ms(ti.last_data_recv), duration_ms(ti.last_data_sent),
                            duration_ms(ti.last_ack_recv), str(ti.unacked),
                            f"{ti.retransmits}/{ti.total_retrans}", duration_ms(ti.rto // 1000)]
            row.append(owners_text(s))
            if show_netns:
                row.insert(0, _shown(s.netns))
            box = containers_text(s)
            if box:
                boxes = True
            row.append(box)
            for i, cell in enumerate(row):
                if len(cell) > widths[i]:
                    widths[i] = len(cell)
            n += 1
            if spill is not None:
                marshal.dump(row, spill)
                continue
            rows.append(row)
            if len(rows) >= spill_rows:
                # O_EXCL, mode 0600, unlinked at once; closed by the stack
                spill = stack.enter_context(tempfile.TemporaryFile())
                for r in rows:
                    marshal.dump(r, spill)
                rows = []
        # a host without containers: no empty Container column
        cells = len(header) if boxes else len(header) - 1
        rows_in: Iterator[list[str]] = iter(rows)
        if spill is not None:  # every row is there
            spill.seek(0)
            rows_in = (marshal.load(spill) for _ in range(n))
        _write_aligned(out, header, rows_in, widths[:cells], {1, 2} if not show_netns else {2, 3})
    return n


def _write_aligned(out: IO[str], header: list[str], rows: Iterator[list[str]], widths: list[int],
                   right: set[int]) -> None:
    """The header and the rows, each cell padded to its column's width (numbers to the
    right), as many cells a row as `widths` has."""
    write = out.write
    cells = range(len(widths))

    def line(row: list[str]) -> str:
        return " ".join([row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i])
                         for i in cells]).rstrip()

    write(line(header))
    for row in rows:
        write("\n" + line(row))
    write("\n")


JSONL_BATCH = 512  # lines joined per write: a text write per line cost a tenth of the run


def write_jsonl(sockets: Iterable[Socket], out: IO[str]) -> int:
    n = 0
    batch: list[str] = []
    add = batch.append
    encode = encode_socket
    for s in sockets:
        add(encode(s))
        if len(batch) >= JSONL_BATCH:
            batch.append("")
            out.write("\n".join(batch))
            n += len(batch) - 1
            batch.clear()
    if batch:
        batch.append("")
        out.write("\n".join(batch))
        n += len(batch) - 1
    return n


def write_json(sockets: Iterable[Socket], out: IO[str], source: str,
               notes: list[str]) -> int:
    """One JSON document, written as the sockets stream in (constant memory)."""
    out.write('{"schema":"%s","source":%s,"notes":%s,"sockets":['
              % (SCHEMA, _encode(source), _encode(notes)))
    n = 0
    for s in sockets:
        if n:
            out.write(",")
        out.write(encode_socket(s))
        n += 1
    out.write("]}\n")
    return n


CSV_COLUMNS = ["netns", "family", "state", "recv_q", "send_q", "local_addr", "local_port",
               "peer_addr", "peer_port", "timer", "timer_expires_ms", "timer_retrans", "uid",
               "inode", "cookie", "pids", "comms", "direction"]
CSV_INFO_COLUMNS = ["rto", "unacked", "lost", "retransmits", "retrans", "total_retrans",
                    "probes", "backoff", "last_data_sent", "last_data_recv", "last_ack_recv",
                    "rtt", "rttvar", "snd_cwnd", "bytes_acked", "bytes_received", "busy_time"]


def write_csv(sockets: Iterable[Socket], out: IO[str], info: bool) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (CSV_INFO_COLUMNS if info else []))
    n = 0
    for s in sockets:
        d = s.to_dict()
        row = [d[c] for c in CSV_COLUMNS[:15]]
        row += [" ".join(str(o.pid) for o in s.owners), " ".join(o.comm for o in s.owners),
                s.direction or ""]
        if info:
            ti = d.get("tcp_info", {})
            row += [ti.get(c, "") for c in CSV_INFO_COLUMNS]
        writer.writerow(row)
        n += 1
    return n


def summarize(sockets: Iterable[Socket], top: int = 10) -> dict:
    """Counts by state, by owning process, by local port and by peer address."""
    by_state: Counter[str] = Counter()
    by_process: Counter[tuple[int, str, str]] = Counter()
    by_port: Counter[tuple[int, str]] = Counter()
    by_peer: Counter[tuple[str, str]] = Counter()
    total = 0
    for s in sockets:
        total += 1
        state = s.state_name
        by_state[state] += 1
        for o in s.owners:
            by_process[(o.pid, o.comm, state)] += 1
        if s.state != TcpState.LISTEN:
            by_port[(s.local_port, state)] += 1
            by_peer[(s.peer_addr, state)] += 1
    return {
        "schema": "halfopen.summary/1",
        "total": total,
        "by_state": dict(by_state.most_common()),
        "by_process": [{"pid": p, "comm": c, "state": st, "count": n}
                       for (p, c, st), n in by_process.most_common(top)],
        "by_local_port": [{"port": p, "state": st, "count": n}
                          for (p, st), n in by_port.most_common(top)],
        "by_peer": [{"addr": a, "state": st, "count": n}
                    for (a, st), n in by_peer.most_common(top)],
    }


def summary_text(summary: dict) -> Iterator[str]:
    yield f"Total: {summary['total']} TCP sockets"
    yield ""
    yield table([[k, str(v)] for k, v in summary["by_state"].items()], ["State", "Count"], {1})
    sections = (("by_process", "Top processes", ["Process", "State", "Count"],
                 lambda r: [f"{r['comm']}({r['pid']})", r["state"], str(r["count"])]),
                ("by_local_port", "Top local ports", ["Port", "State", "Count"],
                 lambda r: [str(r["port"]), r["state"], str(r["count"])]),
                ("by_peer", "Top peers", ["Peer", "State", "Count"],
                 lambda r: [r["addr"], r["state"], str(r["count"])]))
    for key, title, header, row in sections:
        if summary[key]:
            yield ""
            yield title
            yield table([row(r) for r in summary[key]], header, {2})
