"""Golden tests: raw sock_diag replies recorded from a real kernel, decoded offline.

tests/sockets/data/golden_dump.hex holds the reply messages of a dump with
INET_DIAG_INFO and SKMEMINFO (record_golden.py re-records them); the
expected values in golden_dump.json were decoded by record_golden.py with
plain offsets from the uapi headers, not by halfopen's decoder.
"""

from __future__ import annotations

import json
import struct

import pytest
from record_golden import TCP_INFO_LAYOUT
from sockets_support import DATA, parse_ss

from halfopen.collect import diag_replies
from halfopen.model.socket import SKMEM_FIELDS, TCP_INFO_FIELDS, TcpInfo

GOLDEN = json.loads((DATA / "golden_dump.json").read_text())
MESSAGES = [bytes.fromhex(line) for line in (DATA / "golden_dump.hex").read_text().splitlines()
            if line and not line.startswith("#")]
NLMSGHDR = struct.Struct("=IHHII")
NLA = struct.Struct("=HH")
ATTRS_AT = 16 + 72  # nlmsghdr + struct inet_diag_msg


def decode(messages: list[bytes]) -> list[dict]:
    return [s.to_dict() for s in
            diag_replies.decode_messages(iter((m, 0, len(m)) for m in messages), "golden")]


def attrs(msg: bytes) -> list[tuple[int, int, int]]:
    """(type, offset, nla_len) of each attribute of one reply message."""
    out, pos = [], ATTRS_AT
    while pos + 4 <= len(msg):
        nla_len, nla_type = NLA.unpack_from(msg, pos)
        out.append((nla_type, pos, nla_len))
        pos += (nla_len + 3) & ~3
    return out


def shorten_attr(msg: bytes, attr_type: int, new_len: int) -> bytes:
    """`msg` with one attribute's payload cut to `new_len` bytes, lengths fixed."""
    for nla_type, pos, nla_len in attrs(msg):
        if nla_type == attr_type:
            old_end = pos + ((nla_len + 3) & ~3)
            head = bytearray(msg[:pos + 4 + new_len])
            NLA.pack_into(head, pos, 4 + new_len, nla_type)
            head += bytes(-len(head) % 4)
            out = head + msg[old_end:]
            struct.pack_into("=I", out, 0, len(out))  # nlmsg_len
            return bytes(out)
    raise AssertionError(f"no attribute {attr_type}")


def test_recording_is_what_we_think():
    assert len(MESSAGES) == len(GOLDEN["sockets"]) >= 20
    for m in MESSAGES:
        assert NLMSGHDR.unpack_from(m)[0] == len(m)
        assert NLMSGHDR.unpack_from(m)[1] == 20  # SOCK_DIAG_BY_FAMILY
    states = {d["state"] for d in GOLDEN["sockets"]}
    assert states == {"listen", "established", "close_wait", "fin_wait2", "time_wait",
                      "syn_sent", "syn_recv"}
    assert {d["family"] for d in GOLDEN["sockets"]} == {4, 6}


def test_decode_equals_independent_decoding():
    assert decode(MESSAGES) == GOLDEN["sockets"]


def test_decode_from_one_shared_buffer():
    """A recv returns several messages in one buffer; the decoder slices it."""
    buf, chunks = b"", []
    for m in MESSAGES:
        chunks.append((len(buf), len(m)))
        buf += m + bytes(-len(m) % 4)
    got = [s.to_dict() for s in diag_replies.decode_messages(
        iter((buf, off, n) for off, n in chunks), "golden")]
    assert got == GOLDEN["sockets"]


def test_mini_sockets_carry_no_attributes():
    minis = [d for d in decode(MESSAGES) if d["state"] in ("time_wait", "syn_recv")]
    assert len(minis) == 4  # one of each per family
    for d in minis:
        assert (d["inode"], d["uid"]) == (0, 0)
        assert not {"tcp_info", "meminfo", "shutdown", "owners"} & set(d)
        assert d["timer"] == ("timewait" if d["state"] == "time_wait" else "on")
        assert d["cookie"] != 0


def test_kernel_tcp_info_covers_the_model():
    """This kernel's tcp_info is at least as long as every field we know."""
    (length,) = GOLDEN["tcp_info_len"]
    assert length >= 248
    for d in decode(MESSAGES):
        if "tcp_info" in d:
            assert set(d["tcp_info"]) == set(TCP_INFO_FIELDS)
            assert d["tcp_info"]["state"] == {"listen": 10, "established": 1,
                                              "close_wait": 8, "fin_wait2": 5,
                                              "syn_sent": 2}[d["state"]]
            assert set(d["meminfo"]) == set(SKMEM_FIELDS)


def _with_info(messages):
    return [m for m in messages if any(t == diag_replies.INET_DIAG_INFO for t, _p, _l in attrs(m))]


@pytest.mark.parametrize("cut,last_present,first_absent", [
    (104, "total_retrans", "pacing_rate"),  # Linux 2.6 .. 3.14
    (160, "data_segs_out", "delivery_rate"),  # Linux 4.6 .. 4.8
    (168, "delivery_rate", "busy_time"),
    (248, "total_rto_time", None),
])
def test_older_shorter_tcp_info(cut, last_present, first_absent):
    msgs = _with_info(MESSAGES)
    assert len(msgs) >= 10
    full = decode(msgs)
    short = decode([shorten_attr(m, diag_replies.INET_DIAG_INFO, cut) for m in msgs])
    names = list(TCP_INFO_FIELDS)
    keep = names[:names.index(last_present) + 1]
    for f, s in zip(full, short):
        assert {k: v for k, v in f.items() if k != "tcp_info"} == \
               {k: v for k, v in s.items() if k != "tcp_info"}
        assert s["tcp_info"] == {k: f["tcp_info"][k] for k in keep}
    if first_absent is not None:
        info = next(diag_replies.decode_messages(iter([(
            shorten_attr(msgs[0], diag_replies.INET_DIAG_INFO, cut), 0,
            len(shorten_attr(msgs[0], diag_replies.INET_DIAG_INFO, cut)))]))).tcp_info
        assert getattr(info, first_absent) is None
        assert all(getattr(info, k) is None for k in names[names.index(first_absent):])


def test_tcp_info_shorter_than_the_first_group_is_dropped():
    msg = _with_info(MESSAGES)[0]
    (sock,) = diag_replies.decode_messages(iter([(m := shorten_attr(
        msg, diag_replies.INET_DIAG_INFO, 100), 0, len(m))]))
    assert sock.tcp_info is None


def test_old_skmeminfo_without_drops():
    msg = _with_info(MESSAGES)[0]
    full = decode([msg])[0]["meminfo"]
    short = decode([shorten_attr(msg, diag_replies.INET_DIAG_SKMEMINFO, 32)])[0]["meminfo"]
    assert "drops" in full and short == {k: v for k, v in full.items() if k != "drops"}


def test_tcp_info_layout_is_the_uapi_header():
    """record_golden.TCP_INFO_LAYOUT was written from include/uapi/linux/tcp.h; it
    names the model's fields in order and tiles the struct with no gap but the
    bitfield byte 7 (tcpi_delivery_rate_app_limited, tcpi_fastopen_client_fail)."""
    assert [f for f, _o, _c in TCP_INFO_LAYOUT] == list(TCP_INFO_FIELDS)
    offsets = {f: o for f, o, _c in TCP_INFO_LAYOUT}
    # spot checks against the header text (struct tcp_info)
    assert offsets["rto"] == 8 and offsets["last_data_recv"] == 52
    assert offsets["total_retrans"] == 100 and offsets["pacing_rate"] == 104
    assert offsets["bytes_acked"] == 120 and offsets["delivery_rate"] == 160
    assert offsets["busy_time"] == 168 and offsets["delivered"] == 192
    assert offsets["bytes_sent"] == 200 and offsets["reord_seen"] == 220
    assert offsets["snd_wnd"] == 228 and offsets["rehash"] == 236
    assert offsets["total_rto_time"] == 244
    end = 0
    for name, offset, code in TCP_INFO_LAYOUT:
        if code == "nibble_hi":
            continue
        size = 1 if code.startswith("nibble") else struct.calcsize(code)
        assert offset == (8 if end == 7 else end), name
        assert offset % size == 0, f"{name} is not naturally aligned"
        end = offset + size
    assert end == 248


def test_each_tcp_info_field_read_from_its_header_offset():
    """A synthetic tcp_info with a distinct value in every field."""
    buf = bytearray(248)
    want = {}
    for i, (name, offset, code) in enumerate(TCP_INFO_LAYOUT):
        if code == "nibble_lo":
            buf[offset] |= 0x3
            want[name] = 0x3
        elif code == "nibble_hi":
            buf[offset] |= 0xA << 4
            want[name] = 0xA
        else:
            value = (i + 1) * 3 if code == "B" else (i + 1) * 0x01010101 % (1 << 16) + i \
                if code == "H" else (i + 1) * 0x0101_0101 + (1 << 40 if code == "Q" else 0)
            struct.pack_into("=" + code, buf, offset, value)
            want[name] = value
    buf[7] = 0xFF  # the app-limited bitfield byte must not leak into anything
    info = diag_replies.decode_tcp_info(bytes(buf))
    assert isinstance(info, TcpInfo)
    assert {k: getattr(info, k) for k in TCP_INFO_FIELDS} == want


def test_golden_agrees_with_ss_recorded_at_the_same_time():
    rows = {r.cookie: r for r in parse_ss((DATA / "golden_ss.txt").read_text())}
    ss_state = {"ESTAB": "established", "SYN-SENT": "syn_sent", "SYN-RECV": "syn_recv",
                "FIN-WAIT-2": "fin_wait2", "TIME-WAIT": "time_wait",
                "CLOSE-WAIT": "close_wait", "LISTEN": "listen"}
    decoded = decode(MESSAGES)
    assert {d["cookie"] for d in decoded} == set(rows)
    for d in decoded:
        r = rows[d["cookie"]]
        assert d["state"] == ss_state[r.state]
        assert (d["local_addr"], d["local_port"], d["peer_addr"], d["peer_port"] or None) == \
               (r.local_addr, r.local_port, r.peer_addr, r.peer_port)
        assert (d["recv_q"], d["send_q"], d["inode"]) == (r.recv_q, r.send_q, r.inode)
        assert d["timer"] == (r.timer or "off")
        if "tcp_info" in d and d["state"] != "syn_sent":  # a SYN retransmit cuts cwnd
            assert d["tcp_info"]["snd_cwnd"] == int(r.info["cwnd"])


def permuted(msg: bytes) -> bytes:
    """`msg` with its attributes in reverse order: same length, another layout."""
    parts = [msg[pos:pos + ((n + 3) & ~3)] for _t, pos, n in attrs(msg)]
    out = msg[:ATTRS_AT] + b"".join(reversed(parts))
    assert len(out) == len(msg) and out != msg
    return out


def test_a_message_unlike_the_learnt_layout_of_its_length_is_decoded_in_full():
    """The decoder learns one attribute layout per message length and checks each
    message's attribute headers against it: one that differs (here the same
    attributes in another order) takes the attribute-by-attribute path."""
    for m in _with_info(MESSAGES)[:4]:
        alone = decode([m])
        assert decode([m, permuted(m)]) == alone * 2
        assert decode([permuted(m), m]) == alone * 2
        assert decode([permuted(m)]) == alone


def test_jsonl_lines_are_byte_for_byte_json_dumps_of_to_dict():
    """The hand-built line formats (cli.sockets_out) write exactly the bytes of
    json.dumps(to_dict(), separators=(",", ":")): every recorded socket, each
    with several shapes of holders, in namespaces whose names need escaping."""
    from halfopen.cli.sockets_out import encode_socket
    from halfopen.model.container import Container
    from halfopen.model.socket import Owner

    box = Container("docker", "ab" * 32, name='web"1', pod="p%d")
    holders = ((), (Owner(1, "nginx", 3),), (Owner(2, 'we"ird\n%s', 4, box), Owner(3, "ünï", 5)))
    for netns in ("golden", 'odd "ns"\\', "100%d"):
        sockets = list(diag_replies.decode_messages(iter((m, 0, len(m)) for m in MESSAGES), netns))
        for i, s in enumerate(sockets):
            s.owners = holders[i % len(holders)]
            s.direction = (None, "in", "out")[i % 3]
            want = json.dumps(s.to_dict(), separators=(",", ":"))
            assert encode_socket(s) == want
