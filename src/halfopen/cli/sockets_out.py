"""Renderers for `halfopen sockets`: table, JSON, JSON lines, CSV, summary."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO

from ..model.socket import SKMEM_FIELDS, TCP_INFO_FIELDS, TIMER_NAMES, Owner, Socket
from ..model.states import SS_NAMES, STATE_KEYS, TcpState, state_name
from .format import duration_ms, endpoint, table

SCHEMA = "halfopen.sockets/1"
_encode = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring_ascii  # C; for the only free-form strings

# The JSON of Socket.to_dict(), formatted directly: a dict per socket and
# json's encoder cost three times the whole kernel dump at 100k sockets.
# Keys, order and values are the same (tests compare with to_dict()).
_SOCKET_HEAD = ('{"netns":%s,"family":%d,"state":"%s","recv_q":%d,"send_q":%d,'
                '"local_addr":"%s","local_port":%d,"peer_addr":"%s","peer_port":%d,'
                '"timer":"%s","timer_expires_ms":%d,"timer_retrans":%d,"uid":%d,'
                '"inode":%d,"cookie":%d,"direction":%s')
_DIRECTION_JSON = {None: "null", "in": '"in"', "out": '"out"'}
_STATE_TEXT = {int(k): v for k, v in STATE_KEYS.items()}


def _object_format(names: tuple[str, ...], count: int) -> str:
    return "{" + ",".join(f'"{n}":%d' for n in names[:count]) + "}"


_TCP_INFO_FORMATS = [_object_format(TCP_INFO_FIELDS, n) for n in range(len(TCP_INFO_FIELDS) + 1)]
_MEMINFO_FORMATS = [_object_format(SKMEM_FIELDS, n) for n in range(len(SKMEM_FIELDS) + 1)]


def _present(values: tuple) -> tuple:
    """The leading non-None values (the decoder pads missing groups with None)."""
    if values[-1] is not None:
        return values
    n = len(values)
    while n and values[n - 1] is None:
        n -= 1
    return values[:n]


def encode_socket(s: Socket) -> str:
    """json.dumps(s.to_dict()) without building the dict."""
    state = _STATE_TEXT.get(s.state) or state_name(s.state)
    parts = [_SOCKET_HEAD % (
        _quote(s.netns), s.family, state, s.recv_q, s.send_q, s.local_addr, s.local_port,
        s.peer_addr, s.peer_port, TIMER_NAMES.get(s.timer, "unknown"), s.timer_expires_ms,
        s.timer_retrans, s.uid, s.inode, s.cookie, _DIRECTION_JSON[s.direction])]
    if s.shutdown is not None:
        parts.append(',"shutdown":%d' % s.shutdown)
    if s.owners:
        parts.append(',"owners":[' + ",".join(_owner_json(o) for o in s.owners) + "]")
    if s.tcp_info is not None:
        ti = _present(s.tcp_info)
        parts.append(',"tcp_info":' + _TCP_INFO_FORMATS[len(ti)] % ti)
    if s.meminfo is not None:
        mi = _present(s.meminfo)
        parts.append(',"meminfo":' + _MEMINFO_FORMATS[len(mi)] % mi)
    parts.append("}")
    return "".join(parts)


def _owner_json(o: Owner) -> str:
    head = '{"pid":%d,"comm":%s,"fd":%d' % (o.pid, _quote(o.comm), o.fd)
    if o.container is None:
        return head + "}"
    return head + ',"container":' + _encode(o.container.to_dict()) + "}"


def containers_text(sock: Socket) -> str:
    """The Container column: each holder's container once ('' on the host)."""
    boxes = [o.container for o in sock.owners if o.container is not None]
    if not boxes:
        return ""
    return ",".join(dict.fromkeys(c.text() for c in boxes))


def owners_text(sock: Socket) -> str:
    return ",".join(f"{o.comm}({o.pid},fd={o.fd})" for o in sock.owners)


def timer_text(sock: Socket) -> str:
    if sock.timer == 0:
        return ""
    return f"{sock.timer_name},{duration_ms(sock.timer_expires_ms)},{sock.timer_retrans}"


def state_text(state: int) -> str:
    try:
        return SS_NAMES[TcpState(state)]
    except ValueError:
        return str(state)


def write_table(sockets: Iterable[Socket], out: IO[str], info: bool, show_netns: bool) -> int:
    header = ["State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Dir",
              "Timer"]
    if info:
        header += ["Idle-Recv", "Idle-Send", "Last-Ack", "Unacked", "Retrans", "RTO"]
    header.append("Process")
    if show_netns:
        header.insert(0, "Netns")
    rows = []
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
        row.append(containers_text(s))
        if show_netns:
            row.insert(0, s.netns)
        rows.append(row)
    if any(row[-1] for row in rows):
        header.append("Container")
    else:  # a host without containers: no empty column
        rows = [row[:-1] for row in rows]
    right = {1, 2} if not show_netns else {2, 3}
    out.write(table(rows, header, right) + "\n")
    return len(rows)


def write_jsonl(sockets: Iterable[Socket], out: IO[str]) -> int:
    n = 0
    write = out.write
    for s in sockets:
        write(encode_socket(s))
        write("\n")
        n += 1
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
