"""`halfopen trace` on real loopback connections, real processes and real tracefs:
the counts the kernel wrote compared with what each test did."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import time
import uuid

from tests.helpers import run_halfopen
from tests.trace.trace_support import Noise, Tracing, events, leftover, server, stop_server, trace_mount

from halfopen.kernel import tracefs

LOOKUP_S = 1.5  # connections live this long before they end, so an owner lookup sees them


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def _connect(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]


def _wait_line(p, text: str) -> None:
    assert p.stdout.readline().strip() == text


def test_peer_fin_then_owner_close(tracefs_restored):
    """N connections closed by the peer: N established -> close-wait, owned by the
    server (not the softirq's pid), then N close() by the server with their fds."""
    n = 5
    srv, port = server(n, "close")
    t = None
    try:
        t = Tracing("--port", str(port), "--jsonl")
        tracefs_restored.append(t.proc.pid)
        clients = _connect(port, n)
        time.sleep(LOOKUP_S)
        for c in clients:
            c.close()
        _wait_line(srv, "ended")
        time.sleep(1.0)  # the server's close() 0.3 s after each FIN
        rc, out, err = t.stop()
    finally:
        if t is not None:
            t.kill()
        stop_server(srv)
    assert rc == 0, err
    evs = events(out)
    mine = f"127.0.0.1:{port}"
    fins = [e for e in evs if e["event"] == "state" and e["src"] == mine
            and e["from"] == "established" and e["to"] == "close-wait"]
    assert len(fins) == n, evs
    assert {e["pid"] for e in fins} == {srv.pid}
    assert {e["comm"] for e in fins} == {_comm(os.getpid())}  # the same interpreter's name
    assert all(e["ended_by"] == "peer" and e["lived_s"] >= LOOKUP_S * 0.9 for e in fins)
    closes = [e for e in evs if e["event"] == "close" and e["src"] == mine]
    assert len(closes) == n, evs
    assert {e["pid"] for e in closes} == {srv.pid}
    assert all(isinstance(e["fd"], int) and e["fd"] > 2 for e in closes)
    left = [e for e in evs if e["event"] == "state" and e["src"] == mine and e["from"] == "close-wait"]
    assert len(left) == n and all(e["to"] == "last-ack" and e["close_wait_s"] >= 0.25 for e in left)
    ours = [e for e in evs if e["event"] == "state" and e["dst"] == mine and e["from"] == "established"]
    assert len(ours) == n and {e["to"] for e in ours} == {"fin-wait-1"} and {e["pid"] for e in ours} == {os.getpid()}
    assert "0 lost" in err
    assert leftover([t.proc.pid]) == []


def _summary(mode: str, n: int, tracefs_restored) -> dict:
    """The --summary --json row of a server of `mode` whose n clients closed."""
    srv, port = server(n, mode)
    t = None
    try:
        t = Tracing("--port", str(port), "--summary", "--json")
        tracefs_restored.append(t.proc.pid)
        clients = _connect(port, n)
        time.sleep(LOOKUP_S)
        for c in clients:
            c.close()
        _wait_line(srv, "ended")
        time.sleep(1.0)
        rc, out, err = t.stop(signal.SIGTERM)
    finally:
        if t is not None:
            t.kill()
        stop_server(srv)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "halfopen.trace/1"
    assert doc["lost_events"] == 0 and isinstance(doc["lost_events"], int)
    rows = [r for r in doc["owners"] if r["pid"] == srv.pid]
    assert len(rows) == 1, doc
    assert leftover([t.proc.pid]) == []
    return rows[0]


def test_leaker_calls_close_on_none(tracefs_restored):
    row = _summary("leak", 4, tracefs_restored)
    assert (row["fins_received"], row["closes_called"], row["close_events"]) == (4, 0, 0)


def test_healthy_server_calls_close_on_all(tracefs_restored):
    row = _summary("close", 4, tracefs_restored)
    assert (row["fins_received"], row["closes_called"], row["close_events"]) == (4, 4, 4)
    assert row["close_wait_max_s"] >= 0.25


def test_resets_no_socket(tracefs_restored):
    """M connects to a port nothing listens on: M resets sent with reason no_socket
    from that port, and M received by the connecting sockets in syn-sent."""
    m = 6
    hold = socket.socket()  # bound, not listening: the port stays ours and closed
    hold.bind(("127.0.0.1", 0))
    port = hold.getsockname()[1]
    t = None
    try:
        t = Tracing("--port", str(port), "--jsonl")
        tracefs_restored.append(t.proc.pid)
        for _ in range(m):
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                pass
            finally:
                s.close()
        time.sleep(0.8)
        rc, out, err = t.stop()
    finally:
        if t is not None:
            t.kill()
        hold.close()
    assert rc == 0, err
    evs = events(out)
    sent = [e for e in evs if e["event"] == "reset-sent"]
    assert len(sent) == m, evs
    assert all(e["reason"] == "no_socket" and e["state"] is None and e["pid"] is None
               and e["src"] == f"127.0.0.1:{port}" for e in sent)
    got = [e for e in evs if e["event"] == "reset-received"]
    assert len(got) == m and {e["state"] for e in got} == {"syn-sent"} and {e["reason"] for e in got} == {None}


def test_resets_linger(tracefs_restored):
    """K closes in FIN_WAIT2 with TCP_LINGER2 = -1: tcp_abort_on_linger (tcp_close);
    K closes with SO_LINGER 0: tcp_disconnect's reason, tcp_state on this kernel.
    Each reset is owned by this process (the closer), over IPv6 as well."""
    k = 3
    lst = socket.socket(socket.AF_INET6)
    lst.bind(("::1", 0))
    lst.listen(16)
    port = lst.getsockname()[1]
    t = None
    try:
        t = Tracing("--port", str(port), "--jsonl")
        tracefs_restored.append(t.proc.pid)
        linger2 = [socket.create_connection(("::1", port)) for _ in range(k)]
        zero = [socket.create_connection(("::1", port)) for _ in range(k)]
        accepted = [lst.accept()[0] for _ in range(2 * k)]
        time.sleep(LOOKUP_S)
        for c in linger2:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_LINGER2, -1)
            c.shutdown(socket.SHUT_WR)
        time.sleep(0.3)  # the peer ACKs our FIN: FIN_WAIT2
        for c in linger2:
            c.close()
        for c in zero:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        time.sleep(0.8)
        rc, out, err = t.stop()
    finally:
        if t is not None:
            t.kill()
        for s in [lst, *locals().get("accepted", [])]:
            s.close()
    assert rc == 0, err
    evs = events(out)
    sent = [e for e in evs if e["event"] == "reset-sent" and e["dst"] == f"[::1]:{port}"]
    reasons = sorted(e["reason"] for e in sent)
    assert reasons == ["tcp_abort_on_linger"] * k + ["tcp_state"] * k, evs
    assert {e["pid"] for e in sent} == {os.getpid()}
    got = [e for e in evs if e["event"] == "reset-received" and e["src"] == f"[::1]:{port}"]
    assert len(got) == 2 * k
    assert sorted(e["state"] for e in got) == ["close-wait"] * k + ["established"] * k


def test_kill9_leaves_stale_instance_next_run_removes_only_it(tracefs_restored):
    where, _mounted = tracefs.mount_tracefs()  # the fixture unmounts it if it was not mounted
    other = f"other-test-{uuid.uuid4().hex[:8]}"
    os.mkdir(f"{where}/instances/{other}")
    a = b = None
    try:
        a = Tracing("--jsonl")
        tracefs_restored.append(a.proc.pid)
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.communicate(timeout=30)
        assert leftover([a.proc.pid]) == a.instances  # -9: nothing could remove them
        b = Tracing("--jsonl")
        tracefs_restored.append(b.proc.pid)
        assert f"removed the trace instance {a.instance}" in "".join(b.first_err)
        assert f"removed the trace instance {a.instance}{tracefs.CLOSE_SUFFIX}" in "".join(b.first_err)
        assert leftover([a.proc.pid]) == []
        assert os.path.isdir(f"{where}/instances/{other}")
        rc, _out, err = b.stop()
        assert rc == 0, err
        assert leftover([b.proc.pid]) == []
        assert os.path.isdir(f"{where}/instances/{other}")
    finally:
        for t in (a, b):
            if t is not None:
                t.kill()
        os.rmdir(f"{where}/instances/{other}")


def test_sigterm_removes_instance_and_unmounts_what_it_mounted(tracefs_restored):
    mounted_before = trace_mount()
    t = Tracing("--jsonl")
    tracefs_restored.append(t.proc.pid)
    assert leftover([t.proc.pid]) == t.instances
    rc, _out, err = t.stop(signal.SIGTERM)
    assert rc == 0, err
    assert leftover([t.proc.pid]) == []
    if mounted_before is None:
        assert trace_mount() is None  # it mounted tracefs, so it unmounted it
    else:
        assert trace_mount() == mounted_before


def test_duration_ends_cleanly_and_bad_input_is_one_line(tracefs_restored):
    r = run_halfopen("trace", "--duration", "0.5", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "halfopen.trace/1" and doc["lost_events"] == 0 and isinstance(doc["events"], list)
    bad = run_halfopen("trace", "--pid", "2147483647", timeout=60)
    assert bad.returncode == 64 and bad.stderr.count("\n") == 1 and "no such process" in bad.stderr
    both = run_halfopen("trace", "--json", "--jsonl", timeout=60)
    assert both.returncode == 64 and "choose one" in both.stderr


def test_filter_words_state_and_port(tracefs_restored):
    """`trace state close-wait sport = :P`: the server's FINs, close() calls and
    close-wait -> last-ack, none of the clients' events, none of another port's."""
    n = 3
    srv, port = server(n, "close")
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(8)
    t = None
    try:
        t = Tracing("state", "close-wait", "sport", "=", f":{port}", "--jsonl")
        tracefs_restored.append(t.proc.pid)
        clients = _connect(port, n)
        others = _connect(other.getsockname()[1], 2)
        accepted = [other.accept()[0] for _ in others]
        time.sleep(LOOKUP_S)
        for c in clients + others + accepted:
            c.close()
        _wait_line(srv, "ended")
        time.sleep(1.0)
        rc, out, err = t.stop()
    finally:
        if t is not None:
            t.kill()
        stop_server(srv)
        other.close()
    assert rc == 0, err
    evs = events(out)
    mine = f"127.0.0.1:{port}"
    assert evs and all(e["src"] == mine for e in evs), evs
    kinds = sorted((e["event"], e.get("from"), e.get("to")) for e in evs)
    assert kinds == sorted([("state", "established", "close-wait")] * n + [("close", None, None)] * n
                           + [("state", "close-wait", "last-ack")] * n), kinds


def test_filter_words_refused_in_one_line():
    for words in (("dev", "lo"), ("uid", "0"), ("state", "bogus")):
        r = run_halfopen("trace", *words, "--duration", "0.1", timeout=60)
        assert r.returncode == 64 and r.stderr.count("\n") == 1, (words, r.stderr)


def test_host_close_calls_do_not_drown_the_owners(tracefs_restored):
    """A process of the host closes /dev/null in a tight loop while a leaker and a
    healthy server are traced without --pid: close() is read from the owners of the
    sockets followed only, so nothing is lost and both counts stay exact."""
    with Noise(25.0) as noise:
        leak = _summary("leak", 4, tracefs_restored)
        healthy = _summary("close", 4, tracefs_restored)  # lost_events == 0 checked in _summary
        assert noise.proc is not None and noise.proc.poll() is None  # the load ran throughout
    assert noise.closes > 100_000, noise.closes
    assert (leak["fins_received"], leak["closes_called"], leak["close_events"]) == (4, 0, 0)
    assert (healthy["fins_received"], healthy["closes_called"], healthy["close_events"]) == (4, 4, 4)


NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_nginx_closing_is_named_with_its_worker(tracefs_restored, tmp_path):
    """A real server: nginx answers `Connection: close` and closes first. Its side goes
    established -> fin-wait-1 under the worker's own pid and comm (the event fires in
    the kernel, not in nginx: the owner comes from the join), the client's -> close-wait."""
    port = _free_port()
    (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp_path, port=port))
    master = subprocess.Popen(["/usr/sbin/nginx", "-c", str(tmp_path / "nginx.conf"),
                               "-p", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t = None
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and master.poll() is None, "nginx did not start"
                time.sleep(0.1)
        with open(f"/proc/{master.pid}/task/{master.pid}/children") as f:
            workers = [int(p) for p in f.read().split()]
        t = Tracing("--port", str(port), "--jsonl")
        tracefs_restored.append(t.proc.pid)
        clients = _connect(port, 4)
        time.sleep(LOOKUP_S)  # the owner lookup sees the connections
        for c in clients:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for c in clients:
            c.settimeout(5)
            while c.recv(4096):
                pass
        time.sleep(0.5)
        rc, out, err = t.stop()
        for c in clients:
            c.close()
    finally:
        if t is not None:
            t.kill()
        master.terminate()
        master.wait(timeout=30)
    assert rc == 0, err
    evs = events(out)
    mine = f"127.0.0.1:{port}"
    ours = [e for e in evs if e["event"] == "state" and e["src"] == mine
            and e["from"] == "established" and e["to"] == "fin-wait-1"]
    assert len(ours) == 4, evs
    assert {(e["pid"], e["comm"]) for e in ours} == {(workers[0], "nginx")}, ours
    peers = [e for e in evs if e["event"] == "state" and e["dst"] == mine
             and e["from"] == "established" and e["to"] == "close-wait"]
    assert len(peers) == 4 and {e["pid"] for e in peers} == {os.getpid()}, peers
