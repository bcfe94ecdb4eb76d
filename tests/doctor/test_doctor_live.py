"""The doctor on real sockets: each failure reproduced in a test namespace.

Every process is started inside a fresh namespace (the `netns` fixture) with
198.18.0.1 (server) and 198.18.0.2 (client) on lo, and killed at the end.
`--min-age` shortens the age thresholds so the tests need not wait minutes.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest
from doctor_support import CLIENT, PROCS, SERVER, doctor, doctor_until, finding, ids
from tests.helpers import run_halfopen

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def test_close_wait_leak_names_the_leaking_process(lab):
    server = lab.spawn("leak-server", SERVER, "8080", "12")
    lab.spawn("connect", SERVER, "8080", "12", CLIENT)
    time.sleep(0.3)
    rc, data = doctor("--netns", lab.netns, "--window", "0", "--min-age", "0")
    f = finding(data, "close-wait-leak", pid=server.pid)
    assert f["severity"] == "warning" and rc >= 1
    ev = {e["what"]: e["value"] for e in f["evidence"]}
    assert ev["close_wait_sockets"] == 12
    assert ev["recv_q_ge_1"] == 12  # never read: the data and the FIN are still queued
    assert ev["recv_q_0"] == 0
    assert ev["peers"] == [[CLIENT, 12]]
    assert ev["local_ports"] == [[8080, 12]]
    assert "oldest_age_s" in ev and "median_age_s" in ev
    assert f["subject"]["port"] == 8080 and f["subject"]["netns"] == lab.netns
    kill = [x for x in f["fixes"] if x["action"] == "kill"][0]
    assert kill["command"] == f"halfopen kill 'state close-wait pid {server.pid}' --yes"
    assert "dead-peer" not in ids(data, server.pid)


def test_full_accept_queue_is_overflow_not_syn_flood(lab):
    server = lab.spawn("tiny-backlog", SERVER, "8081")
    lab.spawn("hold", SERVER, "8081", "6", CLIENT)
    time.sleep(1.2)  # let SYN retransmits hit the full queue
    rc, data = doctor("--netns", lab.netns, "--window", "1")
    f = finding(data, "accept-queue-overflow", port=8081)
    assert f["subject"]["pid"] == server.pid
    ev = {e["what"]: e["value"] for e in f["evidence"]}
    assert ev["accept_queue"] > ev["backlog"] == 1
    assert "syn-flood" not in ids(data)
    assert rc in (1, 2)


def test_low_fd_limit_is_fd_exhaustion(lab):
    # soft limit 64; the process opens 56 more fds on top of stdio and its listener
    proc = lab.spawn("fds", SERVER, "8082", "56", prefix=["prlimit", "--nofile=64:4096", "--"])
    rc, data = doctor("--netns", lab.netns, "--window", "0")
    f = finding(data, "fd-exhaustion", pid=proc.pid)
    ev = {e["what"]: e["value"] for e in f["evidence"]}
    assert ev["rlimit_nofile_soft"] == 64 and ev["fds_open"] >= 58
    assert f["severity"] in ("warning", "critical")
    pr = [x for x in f["fixes"] if x["action"] == "prlimit"][0]
    assert pr["params"]["pid"] == proc.pid and pr["params"]["resource"] == "nofile"
    assert pr["params"]["soft"] > 64


def test_client_vanishing_behind_a_drop_rule_is_dead_peer(lab, tmp_path):
    trigger = tmp_path / "send"
    server = lab.spawn("send-server", SERVER, "8083", str(trigger))
    lab.spawn("hold", SERVER, "8083", "1", CLIENT)
    lab.drop_from(CLIENT)  # the client vanishes: nothing from it reaches the server any more
    trigger.write_text("go")
    data = doctor_until("dead-peer", server.pid, "--netns", lab.netns, "--window", "0",
                        "--min-age", "1")
    f = finding(data, "dead-peer", pid=server.pid)
    ev = {e["what"]: e["value"] for e in f["evidence"]}
    assert ev["retransmitting"] == 1 and ev["unacked_bytes"] > 0
    assert ev["peers"] == [[CLIENT, 1]]
    assert "close-wait-leak" not in ids(data, server.pid)


def test_idle_connection_without_keepalive_is_keepalive_off(lab):
    server = lab.spawn("idle-server", SERVER, "8084", "3")
    lab.spawn("hold", SERVER, "8084", "3", CLIENT)
    time.sleep(1.5)
    rc, data = doctor("--netns", lab.netns, "--window", "0", "--min-age", "1")
    f = finding(data, "keepalive-off", pid=server.pid)
    ev = {e["what"]: e["value"] for e in f["evidence"]}
    assert ev["idle_sockets_without_keepalive"] == 3
    assert ev["max_idle_s"] >= 1
    ka = [x for x in f["fixes"] if x["action"] == "keepalive"][0]
    assert ka["params"]["pid"] == server.pid and ka["automatic"]
    assert "dead-peer" not in ids(data, server.pid)


def test_destroyed_socket_kept_open_is_fd_leak_fresh_socket_is_not(lab):
    server = lab.spawn("idle-server", SERVER, "8085", "2")
    lab.spawn("hold", SERVER, "8085", "2", CLIENT)
    fresh = lab.spawn("fresh-socket", SERVER, "0")
    time.sleep(0.3)
    # SOCK_DESTROY the server's accepted sockets: the kernel frees the TCP state, the
    # server never touches them again, so its two fds stay open on dead sockets
    kill = run_halfopen("kill", f"state established pid {server.pid}", "--yes", "--netns", lab.netns,
                        timeout=30)
    assert kill.returncode == 0, kill.stderr
    rc, data = doctor("--netns", lab.netns, "--window", "0")
    f = finding(data, "fd-leak", pid=server.pid)
    ev = {e["what"]: e["value"] for e in f["evidence"]}
    assert ev["stale_tcp_socket_fds"] == 2
    assert f["subject"]["netns"] == lab.netns
    assert "fd-leak" not in ids(data, fresh.pid)  # never connected: not a dead connection


def test_netns_run_reports_no_process_outside_it(lab):
    """--netns NAME: per-process findings only for processes in it or owning sockets there."""
    inside = lab.spawn("fds", SERVER, "8086", "56", prefix=["prlimit", "--nofile=64:4096", "--"])
    outside = subprocess.Popen(["prlimit", "--nofile=64:4096", "--", sys.executable, PROCS,
                                "fds", "127.0.0.1", "0", "56"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.procs.append(outside)
    r, _, _ = select.select([outside.stdout], [], [], 10)  # bounded: the fixture kills it
    assert r and outside.stdout.readline().strip() == "ready"
    rc, data = doctor("--netns", lab.netns, "--window", "0")
    assert finding(data, "fd-exhaustion", pid=inside.pid)
    assert "fd-exhaustion" not in ids(data, outside.pid)
    rc, data = doctor("--window", "0")  # the host run sees the host process
    assert finding(data, "fd-exhaustion", pid=outside.pid)


def test_middlebox_applies_to_the_checked_namespace(lab):
    sh_ = ["ip", "netns", "exec", lab.netns, "sysctl", "-qw", "net.ipv4.tcp_keepalive_time=7200"]
    subprocess.run(sh_, check=True, timeout=10)
    rc, data = doctor("--netns", lab.netns, "--window", "0", "--middlebox", "aws-nlb")
    f = finding(data, "timeout-mismatch", middlebox="aws-nlb", netns=lab.netns)
    fx = [x for x in f["fixes"] if x["action"] == "sysctl"][0]
    assert fx["params"]["netns"] == lab.netns and fx["params"]["key"] == "net.ipv4.tcp_keepalive_time"


def test_healthy_host_has_no_false_alarms():
    """This machine: no warning or critical the kernel does not confirm.

    Other engineers' benchmarks share the machine; a finding about one of their
    processes is accepted only when /proc confirms it independently.
    """
    rc, data = doctor("--window", "1")
    assert data["schema"] == "halfopen.doctor/1"
    assert set(data["checked"]) >= {"close-wait-leak", "dead-peer", "syn-flood"}
    for f in data["findings"]:
        if f["severity"] not in ("warning", "critical"):
            continue
        pid = f["subject"].get("pid")
        if f["id"] == "fd-exhaustion" and pid:
            fds = len(os.listdir(f"/proc/{pid}/fd")) if os.path.exists(f"/proc/{pid}") else 0
            soft = 1
            if fds:
                with open(f"/proc/{pid}/limits") as limits:
                    soft = next((int(line.split()[3]) for line in limits
                                 if line.startswith("Max open files")), 0)
            if fds / soft >= 0.75:
                continue  # a neighbour's benchmark near its limit: a true positive
        if f["subject"].get("netns", "host") != "host" and pid:
            continue  # another engineer's lab namespace, not this host's own state
        raise AssertionError(f"false alarm on a healthy host: {f['id']} {f['title']}")


def test_dead_peer_reads_the_keepalive_the_process_set(lab):
    """redis's case: a server that sets its own keepalive (2 s, then 1 s apart, 30 probes: 32 s before it gives up)
    on its clients' sockets. The doctor reads it from the sockets, says so in the title,
    proposes no retrofit slower than it (none at all: 32 s is faster than 60 s/10 s x6), and
    only within an 8 s middlebox a faster one, never a field slower than the process's."""
    server = lab.spawn("keepalive-server", SERVER, "8086", "3", "2", "1", "30")
    lab.spawn("hold", SERVER, "8086", "3", CLIENT)
    lab.drop_from(CLIENT)  # the client vanishes: the probes go unanswered
    data = doctor_until("dead-peer", server.pid, "--netns", lab.netns, "--window", "0",
                        "--min-age", "1")
    f = finding(data, "dead-peer", pid=server.pid)
    ev = {e["what"]: e["value"] for e in f["evidence"]}
    assert ev["keepalive_read"] == "of 3 sockets read: 3 probe 2s/1s x30 (set by the process)"
    assert "3 probe 2s/1s x30 (set by the process)" in f["title"]
    assert not [x for x in f["fixes"] if x["action"] in ("keepalive", "sysctl")], f["fixes"]
    assert "already on" in [x for x in f["fixes"] if x["action"] == "code"][0]["command"]

    _rc, data = doctor("--netns", lab.netns, "--window", "0", "--min-age", "1", "--middlebox", "8")
    f = finding(data, "dead-peer", pid=server.pid)
    ka = [x for x in f["fixes"] if x["action"] == "keepalive"][0]["params"]
    assert (ka["idle"], ka["interval"], ka["count"]) == (2, 1, 3)  # 5 s: inside 8 s, idle kept
    assert "user_timeout" not in ka  # nothing in flight: TCP_USER_TIMEOUT would not apply


def test_timeout_mismatch_says_what_the_sockets_do_not_only_the_sysctl(lab):
    """redis-py's case: connections that set their own TCP_KEEPIDLE are not ruled by
    net.ipv4.tcp_keepalive_time; the finding says what the sockets read do."""
    lab.spawn("keepalive-server", SERVER, "8087", "3", "30", "5", "3")
    lab.spawn("hold", SERVER, "8087", "3", CLIENT)  # no SO_KEEPALIVE on the client's side
    time.sleep(0.3)
    _rc, data = doctor("--netns", lab.netns, "--window", "0", "--middlebox", "aws-nlb")
    f = finding(data, "timeout-mismatch", middlebox="aws-nlb")
    assert "for sockets that set nothing" in f["title"]
    assert "of 6 sockets read: 3 probe 30s/5s x3 (set by the process), 3 without SO_KEEPALIVE" \
        in f["title"], f["title"]
    ev = {e["what"]: e["value"] for e in f["evidence"]}
    assert ev["keepalive_read"].startswith("of 6 sockets read")
