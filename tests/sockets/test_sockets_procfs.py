"""The /proc/net/tcp fallback: unit tests on lines recorded from this kernel, and
`--source procfs` against sock_diag on the same real sockets."""

from __future__ import annotations

import pytest
from sockets_support import DATA
from test_sockets_golden import MESSAGES, decode
from tests.helpers import halfopen_json

from halfopen.collect import procfs_tcp

TCP4 = (DATA / "golden_proc_net_tcp.txt").read_text().splitlines()
TCP6 = (DATA / "golden_proc_net_tcp6.txt").read_text().splitlines()


@pytest.mark.parametrize("text,want", [
    ("0500000A:0016", ("10.0.0.5", 22)),
    ("0100007F:1F90", ("127.0.0.1", 8080)),
    ("00000000:0000", ("0.0.0.0", 0)),
    ("010012C6:FFFF", ("198.18.0.1", 65535)),
    ("00000000000000000000000001000000:01BB", ("::1", 443)),
    ("00000000000000000000000000000000:0000", ("::", 0)),
    ("0000000000000000FFFF0000010012C6:0050", ("::ffff:198.18.0.1", 80)),
    ("02000120000000000000000001000000:0016", ("2001:2::1", 22)),
])
def test_parse_address(text, want):
    assert procfs_tcp.parse_address(text) == want


def test_parse_recorded_lines():
    listen = procfs_tcp.parse_line(TCP4[1], 4, "golden")
    assert listen.state == 10 and listen.peer_addr == "0.0.0.0" and listen.peer_port == 0
    assert listen.local_addr == "198.18.0.1" and listen.netns == "golden"
    assert listen.cookie == 0 and listen.tcp_info is None and listen.inode > 0
    for line in TCP6[1:]:
        s = procfs_tcp.parse_line(line, 6)
        assert s.family == 6 and ":" in s.local_addr


def _key(d: dict) -> tuple:
    return (d["local_addr"], d["local_port"], d["peer_addr"], d["peer_port"])


def test_recorded_tables_agree_with_recorded_dump():
    """/proc/net/tcp{,6} and the sock_diag dump, taken a moment apart, name the same
    sockets with the same states, queues, inodes, uids and timer kinds."""
    table = [s.to_dict() for s in procfs_tcp.parse_table(TCP4, 4, "golden")]
    table += [s.to_dict() for s in procfs_tcp.parse_table(TCP6, 6, "golden")]
    dump = {_key(d): d for d in decode(MESSAGES)}
    procs = {_key(d): d for d in table}
    assert len(procs) == len(table)
    assert set(procs) == set(dump)
    for key, p in procs.items():
        d = dump[key]
        assert (p["family"], p["state"], p["inode"], p["uid"], p["recv_q"]) == \
               (d["family"], d["state"], d["inode"], d["uid"], d["recv_q"]), key
        # /proc shows a listener's Send-Q as 0, sock_diag its backlog
        assert p["send_q"] == (0 if d["state"] == "listen" else d["send_q"]), key
        assert p["timer"] == d["timer"], key


def test_malformed_line_names_file_and_line():
    lines = TCP4[:2] + ["   9: 010012C6:81E1 nonsense"]
    with pytest.raises(ValueError) as info:
        list(procfs_tcp.parse_table(lines, 4, "host", "/proc/net/tcp"))
    assert "/proc/net/tcp:3" in str(info.value) and "nonsense" in str(info.value)


def test_missing_table_is_skipped(tmp_path):
    (tmp_path / "tcp").write_text(TCP4[0] + "\n" + TCP4[1] + "\n")
    socks = list(procfs_tcp.read_sockets(str(tmp_path), "x"))  # no tcp6 file there
    assert len(socks) == 1 and socks[0].netns == "x"


def test_source_procfs_matches_sock_diag(zoo):
    diag = halfopen_json("sockets", "-p", "--netns", zoo.netns)
    proc = halfopen_json("sockets", "-p", "--netns", zoo.netns, "--source", "procfs")
    assert (diag["source"], proc["source"]) == ("sock_diag", "procfs")
    d = {_key(x): x for x in diag["sockets"]}
    p = {_key(x): x for x in proc["sockets"]}
    assert set(p) == set(d) == {e.key for e in zoo.expected}
    for key, x in p.items():
        y = d[key]
        for field in ("family", "state", "recv_q", "inode", "uid", "timer", "netns"):
            assert x[field] == y[field], (key, field)
        assert x["send_q"] == (0 if y["state"] == "listen" else y["send_q"]), key
        assert x.get("owners") == y.get("owners"), key
        assert x["cookie"] == 0 and "tcp_info" not in x


def test_source_procfs_filters_in_userspace(zoo):
    port = zoo.listen_port[6]
    words = ["state", "close-wait", "or", "(", "dport", "=", f":{port}", "and", "not",
             "state", "time-wait", ")", "or", "dst", "198.18.0.2"]
    diag = halfopen_json("sockets", "--netns", zoo.netns, *words)
    proc = halfopen_json("sockets", "--netns", zoo.netns, "--source", "procfs", *words)
    assert {_key(x) for x in proc["sockets"]} == {_key(x) for x in diag["sockets"]}
    assert {x["state"] for x in proc["sockets"]} == {"close_wait", "established", "fin_wait2",
                                                     "syn_sent", "syn_recv"}


def test_python_api_procfs(zoo):
    from halfopen.collect import netns
    from halfopen.collect import sockets as collector
    q = collector.Query(source="procfs", namespaces=(netns.named(zoo.netns),), families=(6,))
    col = collector.collect(q)
    socks = list(col.sockets)
    assert col.source == "procfs"
    assert {s.family for s in socks} == {6}
    assert len(socks) == sum(e.family == 6 for e in zoo.expected)
    assert all(s.cookie == 0 for s in socks)
