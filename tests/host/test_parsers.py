"""Host parsers on /proc files recorded from a real kernel (tests/host/record.py)."""

from __future__ import annotations

import os

import pytest

from halfopen.collect.host import collect_host, conntrack, counters, files, kmsg, limits, sockstat, stalefds, tunables
from halfopen.kernel import procfs as procfs
from halfopen.model.host import UNLIMITED, NetCounters

DATA = os.path.join(os.path.dirname(__file__), "data")
PROC = os.path.join(DATA, "proc")


def text(rel: str) -> str:
    with open(os.path.join(PROC, rel)) as f:
        return f.read()


def test_netstat_and_snmp_recorded():
    for rel in ("net/netstat", "net/snmp"):
        raw = text(rel)
        values = counters.parse_pairs(raw, rel)
        names = sum(len(line.split()) - 1 for line in raw.splitlines()[0::2])
        assert len(values) == names
    values = counters.parse_pairs(text("net/netstat"))
    assert "TcpExt.ListenOverflows" in values and "TcpExt.TCPTimeWaitOverflow" in values
    assert counters.parse_pairs(text("net/snmp"))["Tcp.MaxConn"] == -1


def test_rates():
    r = counters.rates(NetCounters(10.0, {"a": 1, "b": 5}), NetCounters(12.0, {"a": 7, "c": 1}))
    assert (r.window_s, r.delta, r.per_s) == (2.0, {"a": 6}, {"a": 3.0})
    with pytest.raises(ValueError):
        counters.rates(NetCounters(1.0, {}), NetCounters(1.0, {}))


def test_sockstat_recorded():
    raw = sockstat.parse_sockstat(text("net/sockstat"))
    rec = sockstat.to_record({**raw, **sockstat.parse_sockstat(text("net/sockstat6"))})
    assert rec.tcp_inuse == raw["TCP"]["inuse"] and rec.tcp_mem == raw["TCP"]["mem"]
    assert "TCP6" in rec.raw


def test_tunables_recorded():
    t = tunables.read_tunables(os.path.join(PROC, "sys"))
    assert t.tcp_mem == tuple(int(w) for w in text("sys/net/ipv4/tcp_mem").split())
    assert t.ip_local_port_range == tuple(int(w) for w in text("sys/net/ipv4/ip_local_port_range").split())
    assert t.somaxconn == int(text("sys/net/core/somaxconn"))
    assert t.raw["net.ipv4.tcp_keepalive_time"] == text("sys/net/ipv4/tcp_keepalive_time").strip()


def test_files_memory_btime_limits_recorded():
    fl = files.read_files(PROC)
    assert fl.file_max == int(text("sys/fs/file-max")) and fl.nr_open == int(text("sys/fs/nr_open"))
    mem = files.read_memory(PROC)
    assert 0 < mem.available_kb <= mem.total_kb
    assert procfs.boot_time(PROC) > 1_000_000_000
    soft, hard = limits.parse_nofile(text("1/limits"))
    assert soft == UNLIMITED or 0 < soft <= hard or hard == UNLIMITED


def test_conntrack_recorded():
    ct = conntrack.read_conntrack(PROC)
    assert ct.loaded and ct.max == int(text("sys/net/netfilter/nf_conntrack_max"))
    assert ct.tcp_timeouts["established"] == int(
        text("sys/net/netfilter/nf_conntrack_tcp_timeout_established"))
    assert {"drop", "early_drop", "insert_failed"} <= set(ct.stats) and ct.cpus >= 1


def test_conntrack_absent(tmp_path):
    (tmp_path / "modules").write_text("nf_tables 1 0 - Live 0x0\n")
    ct = conntrack.read_conntrack(str(tmp_path))
    assert not ct.loaded and "not loaded" in ct.reason


def test_socket_tables_recorded():
    for fname in ("tcp", "tcp6", "udp", "unix", "packet", "raw"):
        col = 6 if fname == "unix" else 8 if fname == "packet" else 9
        inodes = stalefds.parse_inodes(text(f"net/{fname}"), col, fname)
        assert all(isinstance(i, int) for i in inodes)


def test_kmsg_records_recorded():
    with open(os.path.join(DATA, "kmsg.txt")) as f:
        recs = [kmsg.parse_kmsg_record(line) for line in f if line.strip()]
    assert recs[0].seq >= 0 and all(0 <= r.level <= 7 for r in recs)
    assert [r.seq for r in recs] == sorted(r.seq for r in recs)


@pytest.mark.parametrize("text_, kind, port, pid", [
    ("TCP: request_sock_TCP: Possible SYN flooding on port [::]:8080. Sending cookies.",
     "syn-flood", 8080, None),
    ("TCP: request_sock_TCP: Possible SYN flooding on port 0.0.0.0:80. Dropping request.",
     "syn-flood", 80, None),
    ("TCP: Possible SYN flooding on port 443. Sending cookies.  Check SNMP counters.",
     "syn-flood", 443, None),
    ("nf_conntrack: nf_conntrack: table full, dropping packet", "conntrack-full", None, None),
    ("TCP: out of memory -- consider tuning tcp_mem", "tcp-memory", None, None),
    ("TCP: too many orphaned sockets", "orphans", None, None),
    ("Out of memory: Killed process 4242 (java) total-vm:100kB, anon-rss:0kB", "oom-kill", None, 4242),
])
def test_classify(text_, kind, port, pid):
    line = kmsg.classify(kmsg.Record(4, 9, 2_000_000, text_), 1000.0)
    assert (line.kind, line.port, line.pid, line.wall_time, line.uptime_s) == (kind, port, pid, 1002.0, 2.0)


def test_classify_ignores_others():
    assert kmsg.classify(kmsg.Record(6, 1, 0, "eth0: link up"), 0.0) is None
    assert kmsg.classify(kmsg.Record(6, 1, 0, "oom-kill:constraint=CONSTRAINT_NONE,pid=1"), 0.0) is None


@pytest.mark.parametrize("fn, bad_text, where", [
    (lambda t: counters.parse_pairs(t, "netstat"), "TcpExt: A B\nTcpExt: 1 x\n", "netstat:2"),
    (lambda t: counters.parse_pairs(t, "netstat"), "TcpExt: A B\nIpExt: 1 2\n", "netstat:2"),
    (lambda t: counters.parse_pairs(t, "netstat"), "TcpExt: A B\n", "netstat:1"),
    (lambda t: sockstat.parse_sockstat(t, "sockstat"), "sockets: used 1\nTCP: inuse\n", "sockstat:2"),
    (lambda t: conntrack.parse_stat(t, "nfct"), "a b\n1 2\nzz 1\n", "nfct:3"),
    (lambda t: conntrack.parse_stat(t, "nfct"), "a b\n1\n", "nfct:2"),
    (lambda t: files.parse_file_nr(t, "file-nr"), "1 2\n", "file-nr:1"),
    (lambda t: limits.parse_nofile(t, "limits"), "Max open files  lots  5  files\n", "limits:1"),
    (lambda t: stalefds.parse_inodes(t, 9, "tcp"), "hdr\n 0: a b\n", "tcp:2"),
    (lambda t: kmsg.parse_dmesg_raw(t, "dmesg"), "<6>[ 1.000000] ok\ngarbage\n", "dmesg:2"),
    (lambda t: kmsg.parse_kmsg_record(t, "kmsg"), "no prefix here\n", "kmsg"),
    (lambda t: tunables.parse_tunables({"net.ipv4.tcp_mem": t}), "1 2\n", "net.ipv4.tcp_mem:1"),
])
def test_malformed_names_file_and_line(fn, bad_text, where):
    with pytest.raises(ValueError, match=where):
        fn(bad_text)


def test_replay_recorded_tree():
    facts = collect_host(window=0, proc=PROC, kmsg_path=os.path.join(DATA, "missing-kmsg"),
                         kmsg_patterns={})
    ns = facts.namespaces["host"]
    assert ns.counters and ns.sockstat and ns.tunables and ns.conntrack and ns.rates is None
    assert facts.files and facts.memory and facts.global_tunables.tcp_mem == ns.tunables.tcp_mem
    assert "counters@host" not in facts.unavailable


def test_missing_sources_are_named_and_the_rest_runs(tmp_path):
    # a tree with only meminfo and stat: everything else is unavailable, with a reason
    for rel in ("meminfo", "stat"):
        (tmp_path / rel).write_text(text(rel))
    facts = collect_host(window=0, proc=str(tmp_path), kmsg_path=str(tmp_path / "kmsg"),
                         kmsg_patterns={})
    assert facts.memory is not None and facts.boot_time > 0
    for key in ("counters@host", "sockstat@host", "files"):
        assert "does not exist" in facts.unavailable[key], key
    assert facts.namespaces["host"].counters is None
    assert "not" in facts.unavailable["conntrack@host"]
