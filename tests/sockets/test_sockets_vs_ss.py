"""Real sockets in every state the kernel gives on demand, read by halfopen and by ss.

The zoo (conftest.py) holds LISTEN, ESTABLISHED, CLOSE_WAIT, FIN_WAIT2,
TIME_WAIT, SYN_SENT and SYN_RECV sockets over IPv4 and IPv6 (plus a
v4-mapped connection) in a private namespace. halfopen's records must agree
with `ss -tanpeio` socket by socket, matched by the kernel's cookie.
"""

from __future__ import annotations

import pytest
from sockets_support import ss
from tests.helpers import halfopen_json

SS_STATE = {"ESTAB": "established", "SYN-SENT": "syn_sent", "SYN-RECV": "syn_recv",
            "FIN-WAIT-1": "fin_wait1", "FIN-WAIT-2": "fin_wait2", "TIME-WAIT": "time_wait",
            "UNCONN": "close", "CLOSE-WAIT": "close_wait", "LAST-ACK": "last_ack",
            "LISTEN": "listen", "CLOSING": "closing"}


@pytest.mark.parametrize("family", [4, 6])
def test_every_state_present_with_owner_and_queues(zoo, family):
    got = {(s.local_addr, s.local_port, s.peer_addr, s.peer_port): s
           for s in zoo.dump(owners=True) if s.family == family}
    want = {e.key: e for e in zoo.expected if e.family == family}
    assert set(got) == set(want)
    states = set()
    for key, e in want.items():
        s = got[key]
        states.add(s.state_name)
        assert s.state_name == e.state, key
        comms = {o.comm for o in s.owners}
        assert comms == ({e.owner} if e.owner else set()), (key, e.state)
        pids = {o.pid for o in s.owners}
        if e.owner:
            assert pids == {zoo.srv.pid if e.owner == "ho-srv" else zoo.cli.pid}
        if e.recv_q is not None:
            assert s.recv_q == e.recv_q, (key, e.state)
        if e.timer is not None:
            assert s.timer_name == e.timer, (key, e.state)
    assert states == {"listen", "established", "close_wait", "fin_wait2", "time_wait",
                      "syn_sent", "syn_recv"}


def test_mini_sockets_have_no_inode_uid_or_attributes(zoo):
    for s in zoo.dump(tcp_info=True):
        if s.state_name in ("time_wait", "syn_recv"):
            assert (s.inode, s.uid, s.tcp_info, s.meminfo, s.shutdown) == (0, 0, None, None, None)
        elif s.inode:  # a full socket someone holds
            assert s.tcp_info is not None and s.tcp_info.state == s.state
            assert s.meminfo is not None


def test_shutdown_bits(zoo):
    by_state = {}
    for s in zoo.dump(tcp_info=True):
        by_state.setdefault(s.state_name, set()).add(s.shutdown)
    assert by_state["close_wait"] == {1}  # RCV_SHUTDOWN: the peer's FIN arrived
    assert by_state["fin_wait2"] == {2}  # SEND_SHUTDOWN: our FIN went out
    assert by_state["listen"] == {0}


def _ss_int(row, key: str) -> int:
    return int(row.info.get(key, 0))


def test_cli_json_matches_ss_tanpeio(zoo):
    # ss before and after ours: counters that tick (SYN retransmits) must lie between
    before = {r.cookie: r for r in ss(zoo.netns)}
    doc = halfopen_json("sockets", "-p", "-i", "--netns", zoo.netns)
    theirs = {r.cookie: r for r in ss(zoo.netns)}
    assert doc["source"] == "sock_diag"
    ours = {d["cookie"]: d for d in doc["sockets"]}
    assert len(ours) == len(doc["sockets"]) == len(zoo.expected)
    assert set(ours) == set(theirs) == set(before)
    for cookie, r in theirs.items():
        d, r0 = ours[cookie], before[cookie]
        where = f"{r.state} {r.local_addr}:{r.local_port} -> {r.peer_addr}:{r.peer_port}"
        assert d["state"] == SS_STATE[r.state], where
        assert d["netns"] == zoo.netns
        assert (d["local_addr"], d["local_port"]) == (r.local_addr, r.local_port), where
        assert (d["peer_addr"], d["peer_port"] or None) == (r.peer_addr, r.peer_port), where
        assert (d["recv_q"], d["send_q"]) == (r.recv_q, r.send_q), where
        assert d["inode"] == r.inode, where
        assert d["uid"] == r.uid, where
        owners = {(o["comm"], o["pid"], o["fd"]) for o in d.get("owners", [])}
        assert owners == r.owners, where
        assert d["timer"] == (r.timer or "off"), where
        if r.timer:
            assert r0.timer_retrans <= d["timer_retrans"] <= r.timer_retrans, where
            if r0.timer_retrans == r.timer_retrans:  # no retransmit in between
                slack = max(r0.timer_precision_ms, r.timer_precision_ms) + 50
                assert r.timer_ms - slack <= d["timer_expires_ms"] <= r0.timer_ms + slack, \
                    where
        ti = d.get("tcp_info")
        if r.inode == 0 and r.state in ("TIME-WAIT", "SYN-RECV"):
            assert ti is None
            continue
        assert ti is not None, where
        assert ti["snd_cwnd"] == _ss_int(r, "cwnd"), where
        if r.state in ("ESTAB", "CLOSE-WAIT", "FIN-WAIT-2"):
            assert ti["snd_mss"] == _ss_int(r, "mss"), where
            assert ti["rcv_mss"] == _ss_int(r, "rcvmss"), where
            assert ti["bytes_acked"] == _ss_int(r, "bytes_acked"), where
            assert ti["bytes_received"] == _ss_int(r, "bytes_received"), where
            assert ti["bytes_sent"] == _ss_int(r, "bytes_sent"), where
            assert ti["segs_in"] == _ss_int(r, "segs_in"), where
            assert ti["delivered"] == _ss_int(r, "delivered"), where
            assert ti["snd_wnd"] == _ss_int(r, "snd_wnd"), where
            assert ti["rto"] / 1000 == float(r.info["rto"]), where
            assert f"{ti['snd_wscale']},{ti['rcv_wscale']}" == r.info["wscale"], where
            rtt, rttvar = (float(x) for x in r.info["rtt"].split("/"))
            assert (ti["rtt"] / 1000, ti["rttvar"] / 1000) == (rtt, rttvar), where


def test_python_api_agrees_with_cli(zoo):
    doc = halfopen_json("sockets", "-p", "--netns", zoo.netns)
    api = {s.cookie: s.to_dict() for s in zoo.dump(owners=True)}
    cli = {d["cookie"]: d for d in doc["sockets"]}
    assert set(api) == set(cli)
    volatile = {"timer_expires_ms", "timer_retrans"}
    for cookie, d in cli.items():
        a = api[cookie]
        assert {k: v for k, v in a.items() if k not in volatile} == \
               {k: v for k, v in d.items() if k not in volatile}


@pytest.mark.parametrize("word,states", [
    ("close-wait", {"close_wait"}),
    ("syn-recv", {"syn_recv"}),
    ("bucket", {"syn_recv", "time_wait"}),
    ("connected", {"established", "close_wait", "fin_wait2", "time_wait", "syn_sent",
                   "syn_recv"}),
    ("synchronized", {"established", "close_wait", "fin_wait2", "time_wait", "syn_recv"}),
    ("big", {"listen", "established", "close_wait", "fin_wait2", "syn_sent"}),
])
def test_state_words_select_like_ss(zoo, word, states):
    doc = halfopen_json("sockets", "--netns", zoo.netns, "state", word)
    got = {(d["local_addr"], d["local_port"], d["peer_addr"], d["peer_port"])
           for d in doc["sockets"]}
    assert {d["state"] for d in doc["sockets"]} == states
    rows = ss(zoo.netns, "state", word)
    assert got == {(r.local_addr, r.local_port, r.peer_addr, r.peer_port or 0) for r in rows}
