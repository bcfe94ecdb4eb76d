#!/usr/bin/env python3
"""Re-record the golden data in tests/sockets/data/ from the running kernel (root).

    python3 tests/sockets/record_golden.py

It builds the socket zoo (every state, IPv4 and IPv6) in a fresh namespace,
then within a moment takes:
  golden_dump.hex         the raw SOCK_DIAG_BY_FAMILY reply messages (INET_DIAG_INFO
                          and SKMEMINFO asked for), one message per line in hex
  golden_dump.json        what each message says, decoded here independently of
                          halfopen's decoder (plain offsets from the uapi headers)
  golden_ss.txt           `ss -tanpeio` for the same sockets
  golden_proc_net_tcp{,6}.txt  the /proc/net/tcp{,6} tables for the same sockets
The recording is checked against ss before anything is written.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from sockets_support import DATA, build_zoo, make_netns, parse_ss, remove_netns, run  # noqa: E402

from halfopen.collect import netns  # noqa: E402
from halfopen.kernel import netlink, sock_diag  # noqa: E402

# include/uapi/linux/inet_diag.h: struct inet_diag_msg (72 bytes after nlmsghdr)
NLMSGHDR_LEN = 16
MSG_LEN = 72
INET_DIAG_INFO, INET_DIAG_SKMEMINFO, INET_DIAG_SHUTDOWN = 2, 7, 8

# include/uapi/linux/tcp.h struct tcp_info: (field, byte offset, struct code).
# Byte 6 holds two 4-bit fields: tcpi_snd_wscale (low nibble), tcpi_rcv_wscale.
TCP_INFO_LAYOUT = [
    ("state", 0, "B"), ("ca_state", 1, "B"), ("retransmits", 2, "B"), ("probes", 3, "B"),
    ("backoff", 4, "B"), ("options", 5, "B"), ("snd_wscale", 6, "nibble_lo"),
    ("rcv_wscale", 6, "nibble_hi"),
    ("rto", 8, "I"), ("ato", 12, "I"), ("snd_mss", 16, "I"), ("rcv_mss", 20, "I"),
    ("unacked", 24, "I"), ("sacked", 28, "I"), ("lost", 32, "I"), ("retrans", 36, "I"),
    ("fackets", 40, "I"), ("last_data_sent", 44, "I"), ("last_ack_sent", 48, "I"),
    ("last_data_recv", 52, "I"), ("last_ack_recv", 56, "I"), ("pmtu", 60, "I"),
    ("rcv_ssthresh", 64, "I"), ("rtt", 68, "I"), ("rttvar", 72, "I"),
    ("snd_ssthresh", 76, "I"), ("snd_cwnd", 80, "I"), ("advmss", 84, "I"),
    ("reordering", 88, "I"), ("rcv_rtt", 92, "I"), ("rcv_space", 96, "I"),
    ("total_retrans", 100, "I"),
    ("pacing_rate", 104, "Q"), ("max_pacing_rate", 112, "Q"), ("bytes_acked", 120, "Q"),
    ("bytes_received", 128, "Q"), ("segs_out", 136, "I"), ("segs_in", 140, "I"),
    ("notsent_bytes", 144, "I"), ("min_rtt", 148, "I"), ("data_segs_in", 152, "I"),
    ("data_segs_out", 156, "I"), ("delivery_rate", 160, "Q"), ("busy_time", 168, "Q"),
    ("rwnd_limited", 176, "Q"), ("sndbuf_limited", 184, "Q"), ("delivered", 192, "I"),
    ("delivered_ce", 196, "I"), ("bytes_sent", 200, "Q"), ("bytes_retrans", 208, "Q"),
    ("dsack_dups", 216, "I"), ("reord_seen", 220, "I"), ("rcv_ooopack", 224, "I"),
    ("snd_wnd", 228, "I"), ("rcv_wnd", 232, "I"), ("rehash", 236, "I"),
    ("total_rto", 240, "H"), ("total_rto_recoveries", 242, "H"), ("total_rto_time", 244, "I"),
]
SKMEM_NAMES = ["rmem_alloc", "rcvbuf", "wmem_alloc", "sndbuf", "fwd_alloc", "wmem_queued",
               "optmem", "backlog", "drops"]
STATE_NAMES = {1: "established", 2: "syn_sent", 3: "syn_recv", 4: "fin_wait1",
               5: "fin_wait2", 6: "time_wait", 7: "close", 8: "close_wait", 9: "last_ack",
               10: "listen", 11: "closing", 12: "new_syn_recv"}
TIMERS = {0: "off", 1: "on", 2: "keepalive", 3: "timewait", 4: "persist"}


def field_value(info: bytes, offset: int, code: str) -> int | None:
    if code == "nibble_lo":
        return info[offset] & 0x0F if offset < len(info) else None
    if code == "nibble_hi":
        return info[offset] >> 4 if offset < len(info) else None
    size = struct.calcsize(code)
    if offset + size > len(info):
        return None
    return struct.unpack_from("=" + code, info, offset)[0]


def decode_tcp_info_plain(info: bytes) -> dict:
    """Every field of the layout that fits whole inside `info`."""
    out = {}
    for name, offset, code in TCP_INFO_LAYOUT:
        value = field_value(info, offset, code)
        if value is not None:
            out[name] = value
    return out


def decode_plain(msg: bytes, netns_name: str) -> dict:
    """One reply message -> the dict Socket.to_dict() should give for it."""
    m = msg[NLMSGHDR_LEN:]
    family, state, timer, retrans = m[0], m[1], m[2], m[3]
    fam = socket.AF_INET if family == socket.AF_INET else socket.AF_INET6
    alen = 4 if fam == socket.AF_INET else 16
    cookie = int.from_bytes(m[44:48], sys.byteorder) | \
        int.from_bytes(m[48:52], sys.byteorder) << 32
    u32 = lambda at: int.from_bytes(m[at:at + 4], sys.byteorder)  # noqa: E731
    d = {
        "netns": netns_name, "family": 4 if fam == socket.AF_INET else 6,
        "state": STATE_NAMES[state], "recv_q": u32(56), "send_q": u32(60),
        "local_addr": socket.inet_ntop(fam, m[8:8 + alen]),
        "local_port": int.from_bytes(m[4:6], "big"),
        "peer_addr": socket.inet_ntop(fam, m[24:24 + alen]),
        "peer_port": int.from_bytes(m[6:8], "big"),
        "timer": TIMERS[timer], "timer_expires_ms": u32(52), "timer_retrans": retrans,
        "uid": u32(64), "inode": u32(68), "cookie": cookie,
        "direction": None,  # the collector sets it from the listeners, not the decoder
    }
    pos = MSG_LEN
    while pos + 4 <= len(m):
        nla_len, nla_type = struct.unpack_from("=HH", m, pos)
        payload = m[pos + 4:pos + nla_len]
        if nla_type == INET_DIAG_SHUTDOWN:
            d["shutdown"] = payload[0]
        elif nla_type == INET_DIAG_INFO:
            d["tcp_info"] = decode_tcp_info_plain(payload)
            d["_tcp_info_len"] = len(payload)
        elif nla_type == INET_DIAG_SKMEMINFO:
            n = len(payload) // 4
            d["meminfo"] = dict(zip(SKMEM_NAMES, struct.unpack_from(f"={n}I", payload)))
        pos += (nla_len + 3) & ~3
    return d


def dump_raw(ns_name: str) -> list[bytes]:
    """The raw reply messages of one dump per family, INFO and SKMEMINFO asked for."""
    from halfopen.collect import diag_replies  # the request builder only
    with netns.entered(netns.named(ns_name)):
        nl = netlink.open_sock_diag()
    messages = []
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            request = sock_diag.build_dump_request(
                family, ext=diag_replies.EXT_INFO | diag_replies.EXT_SKMEMINFO)
            for buf, offset, length in netlink.dump(nl, request):
                messages.append(bytes(buf[offset:offset + length]))
    finally:
        nl.close()
    return messages


def check_against_ss(decoded: list[dict], ss_text: str) -> None:
    rows = {r.cookie: r for r in parse_ss(ss_text)}
    assert set(rows) == {d["cookie"] for d in decoded}, "ss and the dump disagree on sockets"
    for d in decoded:
        r = rows[d["cookie"]]
        assert (d["local_addr"], d["local_port"]) == (r.local_addr, r.local_port)
        assert (d["recv_q"], d["send_q"], d["inode"]) == (r.recv_q, r.send_q, r.inode)


def main() -> int:
    if os.geteuid() != 0:
        print("record_golden.py: needs root (network namespaces)", file=sys.stderr)
        return 1
    name = make_netns()
    zoo = None
    try:
        zoo = build_zoo(name)
        messages = dump_raw(name)
        ss_text = run("ss", "-tanpeio", netns=name).stdout
        tables = {f: run("cat", f"/proc/net/{f}", netns=name).stdout for f in ("tcp", "tcp6")}
    finally:
        if zoo is not None:
            zoo.stop()
        remove_netns(name)
    decoded = [decode_plain(m, "golden") for m in messages]
    check_against_ss(decoded, ss_text)
    info_lens = {d.pop("_tcp_info_len") for d in decoded if "_tcp_info_len" in d}
    uname = os.uname()
    DATA.mkdir(exist_ok=True)
    with open(DATA / "golden_dump.hex", "w") as f:
        f.write(f"# SOCK_DIAG_BY_FAMILY replies, {uname.sysname} {uname.release} "
                f"{uname.machine}, one netlink message per line\n")
        for m in messages:
            f.write(m.hex() + "\n")
    meta = {"kernel": uname.release, "machine": uname.machine,
            "byteorder": sys.byteorder,
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "tcp_info_len": sorted(info_lens), "sockets": decoded}
    with open(DATA / "golden_dump.json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    (DATA / "golden_ss.txt").write_text(ss_text)
    for table, text in tables.items():
        (DATA / f"golden_proc_net_{table}.txt").write_text(text)
    print(f"recorded {len(messages)} messages (tcp_info {sorted(info_lens)} bytes) "
          f"into {DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
