"""`halfopen exporter --trace`: a real exporter process, real connections between two
processes with names of their own, real tracefs; the counters of each one's identity
increase by exactly what the test did."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers import AS_NOBODY, nobody_cannot_run_halfopen, start_halfopen, wait_for
from tests.trace.trace_support import HERE, leftover

N = 3  # connections the client closes with a FIN
K = 2  # and with SO_LINGER 0 (a reset)
LOOKUP_S = 1.5  # connections live this long before they end, so an owner lookup sees them


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _mine(m: dict, name: str, comm: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    return {tuple(labels[k] for k in keys): v for labels, v in m.get(name, []) if labels["comm"] == comm}


def _peer(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(HERE, "named_peers.py"), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_exporter_trace_counts_exactly_what_was_done(tracefs_restored):
    tag = uuid.uuid4().hex[:6]
    srv_comm, cli_comm = f"hoexps{tag}", f"hoexpc{tag}"
    port = _free_port()
    exp = start_halfopen("exporter", "--listen", f"127.0.0.1:{port}", "--no-doctor",
                         "--trace", "--top", "10000",
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tracefs_restored.append(exp.pid)
    peers: list[subprocess.Popen] = []
    try:
        assert exp.stderr is not None
        line = exp.stderr.readline()  # the tracer starts before the server says it serves
        assert "serving metrics" in line, line + exp.stderr.read() if exp.poll() is not None else line
        assert len(leftover([exp.pid])) == 2  # its two instances
        before = _scrape(port)
        assert before["halfopen_trace_up"] == [({}, 1.0)]
        srv = _peer("server", srv_comm)
        peers.append(srv)
        assert srv.stdout is not None
        srv_port = srv.stdout.readline().strip()
        cli = _peer("client", cli_comm, srv_port, str(N), str(K))
        peers.append(cli)
        assert cli.stdin is not None and cli.stdout is not None
        assert cli.stdout.readline().strip() == "open"
        time.sleep(LOOKUP_S)
        cli.stdin.write("go\n")
        cli.stdin.flush()
        assert cli.stdout.readline().strip() == "done"
        keys = ("from", "to")
        want_srv_states = {("established", "close_wait"): N, ("close_wait", "last_ack"): N,
                           ("established", "close"): K}
        want_cli_states = {("established", "fin_wait1"): N, ("established", "close"): K}
        name = "halfopen_trace_state_changes_total"
        wait_for("the server's counters", lambda: _mine(_scrape(port), name, srv_comm, keys) == want_srv_states,
                 timeout=20)
        time.sleep(1.0)  # nothing more comes: the counts stay exact
        after = _scrape(port)
        assert _mine(after, name, srv_comm, keys) == want_srv_states
        assert _mine(after, name, cli_comm, keys) == want_cli_states
        rkeys = ("direction", "reason")
        rname = "halfopen_trace_resets_total"
        # SO_LINGER 0 resets with tcp_state on this kernel (tcp_disconnect; docs/trace.md)
        assert _mine(after, rname, cli_comm, rkeys) == {("sent", "tcp_state"): K}
        assert _mine(after, rname, srv_comm, rkeys) == {("received", ""): K}
        assert after["halfopen_trace_lost_events_total"] == [({}, 0.0)]
        assert after["halfopen_trace_events_total"][0][1] > before["halfopen_trace_events_total"][0][1]
        exp.send_signal(signal.SIGTERM)
        assert exp.wait(timeout=60) == 0, exp.stderr.read()
        assert leftover([exp.pid]) == []
    finally:
        for p in (*peers, exp):
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=30)


def test_exporter_trace_without_permission_exports_up_0(tracefs_restored):
    """As nobody: one note on stderr, halfopen_trace_up 0, the other metrics served."""
    unreachable = nobody_cannot_run_halfopen()
    if unreachable:
        pytest.skip(unreachable)
    port = _free_port()
    exp = start_halfopen("exporter", "--listen", f"127.0.0.1:{port}", "--no-doctor", "--trace",
                         prefix=AS_NOBODY, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, cwd="/")
    try:
        assert exp.stderr is not None
        first = exp.stderr.readline()
        assert "--trace: not traced" in first and "tracefs needs root" in first, first
        assert "serving metrics" in exp.stderr.readline()
        m = _scrape(port)
        assert m["halfopen_trace_up"] == [({}, 0.0)]
        assert "halfopen_sockets" in m and "halfopen_trace_lost_events_total" not in m
    finally:
        if exp.poll() is None:
            exp.send_signal(signal.SIGTERM)
            try:
                exp.wait(timeout=30)
            except subprocess.TimeoutExpired:
                exp.kill()
        exp.communicate(timeout=30)
