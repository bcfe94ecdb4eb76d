"""Which side this host is: a client's pool against a real nginx, and piles too young to judge.

Every process runs inside the test's namespace (the `lab` fixture: 198.18.0.1
server, 198.18.0.2 client on lo). nginx is Debian's, started with its own
config, pid and log files in tmp_path, keepalive_timeout 1s: it closes the
pool's idle connections after a second, as a production server does after 75.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from doctor_support import CLIENT, SERVER, doctor, doctor_until, finding
from tests.helpers import run_halfopen

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None,
                                 reason="nginx not installed (scripts/install-deps --test)")

NGINX_PORT = 8090
SERVICE = f"{SERVER}:{NGINX_PORT}"
POOL = 4


def ev(f: dict) -> dict:
    return {e["what"]: e["value"] for e in f["evidence"]}


def sockets_json(netns: str, *words: str) -> list[dict]:
    p = run_halfopen("sockets", "-p", "--json", "--netns", netns, *words)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["sockets"]


@needs_nginx
def test_pool_keeping_connections_nginx_closed_is_the_clients_close_wait(lab, tmp_path):
    nginx = lab.nginx(str(tmp_path), NGINX_PORT, "1s")
    client = lab.spawn("pool", SERVER, str(NGINX_PORT), str(POOL))

    # younger than the default 30 s: counted and said, not judged
    rc, data = doctor("--netns", lab.netns, "--window", "0")
    young = finding(data, "close-wait-leak", pid=client.pid)
    assert young["severity"] == "info" and "not yet judged" in young["title"]
    assert young["subject"]["direction"] == "out" and young["subject"]["peer"] == SERVICE
    assert ev(young)["young_close_wait_sockets"] == POOL

    rc, data = doctor("--netns", lab.netns, "--window", "0", "--min-age", "0")
    f = finding(data, "close-wait-leak", pid=client.pid)
    assert f["severity"] == "warning" and rc == 1  # a bounded pool that does not grow
    assert f["subject"]["direction"] == "out"
    assert f["subject"]["peer"] == SERVICE and f["subject"]["port"] == NGINX_PORT
    assert "is the client" in f["title"] and SERVICE in f["title"]
    assert "closed after its 1s `keepalive_timeout` (nginx)" in f["title"]
    e = ev(f)
    assert e["close_wait_sockets"] == POOL
    assert e["destinations"] == [[SERVICE, POOL]]
    assert e["recv_q_ge_1"] == POOL  # the pool never read the server's FIN
    assert e["server_keepalive_timeout_s"] == 1.0
    # where it was read: nginx's own file (its -c) and the context
    assert [x for x in f["evidence"] if x["what"] == "server_keepalive_timeout_s"][0][
        "source"].endswith("nginx.conf (http)")
    kill = [x for x in f["fixes"] if x["action"] == "kill"][0]
    assert kill["params"]["filter"] == f"state close-wait pid {client.pid} and ( dst {SERVICE} )"
    code = " ".join(x["command"] for x in f["fixes"] if x["action"] == "code")
    assert "below the server's keepalive timeout (1s `keepalive_timeout` (nginx))" in code
    assert "validate a connection on checkout" in code and "close idle connections" in code
    assert "pool" in f["why"] and "keep-alive timeout" in f["why"]
    # the server closed properly: no close-wait-leak for nginx
    assert not [x for x in data["findings"] if x["id"] == "close-wait-leak"
                and x["subject"].get("comm") == "nginx"]
    assert nginx.poll() is None


@needs_nginx
def test_pool_near_its_fd_limit_is_critical(lab, tmp_path):
    lab.nginx(str(tmp_path), NGINX_PORT, "1s")
    client = lab.spawn("pool", SERVER, str(NGINX_PORT), str(POOL), "38",
                       prefix=["prlimit", "--nofile=40:4096", "--"])
    rc, data = doctor("--netns", lab.netns, "--window", "0", "--min-age", "0")
    f = finding(data, "close-wait-leak", pid=client.pid, direction="out")
    e = ev(f)
    assert e["rlimit_nofile_soft"] == 40 and e["fds_open"] >= 36
    assert f["severity"] == "critical" and rc == 2
    assert f["subject"]["peer"] == SERVICE
    assert [x for x in f["fixes"] if x["action"] == "prlimit"][0]["params"]["pid"] == client.pid


def test_young_close_wait_pile_is_info_not_silence(lab):
    server = lab.spawn("leak-server", SERVER, "8080", "40")
    lab.spawn("connect", SERVER, "8080", "40", CLIENT)
    time.sleep(0.3)
    rc, data = doctor("--netns", lab.netns, "--window", "0")
    f = finding(data, "close-wait-leak", pid=server.pid)
    assert f["severity"] == "info"
    assert f["subject"]["direction"] == "in" and f["subject"]["port"] == 8080
    assert "not yet judged; run again, or lower --min-age" in f["title"]
    assert "40 CLOSE_WAIT sockets younger than 30s" in f["title"]
    e = ev(f)
    assert e["young_close_wait_sockets"] == 40 and 0 <= e["oldest_age_s"] < 30
    # said, and not an alarm: nothing above info about this namespace (the shared host may
    # have its own findings, e.g. an OOM kill in the kernel log)
    assert not [x for x in data["findings"] if x["severity"] in ("warning", "critical")
                and x["subject"].get("netns") == lab.netns]


def test_server_close_wait_keeps_the_servers_advice(lab):
    server = lab.spawn("leak-server", SERVER, "8080", "12")
    lab.spawn("connect", SERVER, "8080", "12", CLIENT)
    time.sleep(0.3)
    rc, data = doctor("--netns", lab.netns, "--window", "0", "--min-age", "0")
    f = finding(data, "close-wait-leak", pid=server.pid)
    assert f["subject"]["direction"] == "in" and "peer" not in f["subject"]
    assert f["severity"] == "warning" and "is the client" not in f["title"]
    assert any("after recv() returns 0" in x["command"] for x in f["fixes"])


def test_sockets_show_the_direction_whatever_the_filter(lab):
    server = lab.spawn("idle-server", SERVER, "8084", "3")
    client = lab.spawn("hold", SERVER, "8084", "3", CLIENT)
    time.sleep(0.3)
    cases = [(source, words) for source in ("sock_diag", "procfs")
             for words in ((), ("state", "established"))]  # the filter drops the listener
    for source, words in cases:
        socks = sockets_json(lab.netns, "--source", source, *words)
        by_pid = {}
        for s in socks:
            for o in s.get("owners", []):
                by_pid.setdefault(o["pid"], []).append(s)
        established = [s for s in by_pid[server.pid] if s["state"] == "established"]
        assert len(established) == 3 and {s["direction"] for s in established} == {"in"}
        assert len(by_pid[client.pid]) == 3
        assert {s["direction"] for s in by_pid[client.pid]} == {"out"}
        listeners = [s for s in socks if s["state"] == "listen"]
        assert len(listeners) == (0 if words else 1)
        assert all(s["direction"] is None for s in listeners)
    table = run_halfopen("sockets", "--netns", lab.netns, "state", "established")
    lines = table.stdout.splitlines()
    assert "Dir" in lines[0].split()
    col = lines[0].split().index("Dir")
    got = sorted(line.split()[col - 2] for line in lines[1:])  # "Address:Port" are 2 words
    assert got == ["in"] * 3 + ["out"] * 3, table.stdout


def test_client_of_a_silent_server_gets_the_clients_fix(lab, tmp_path):
    """dead-peer on the client's side: the server stopped answering, the fix is the client's."""
    trigger = tmp_path / "send"
    lab.spawn("idle-server", SERVER, "8086", "1")
    client = lab.spawn("send-client", SERVER, "8086", str(trigger), CLIENT)
    lab.drop_from(SERVER, "tcp", "sport", "8086")  # the server vanishes for the client
    trigger.write_text("go")
    data = doctor_until("dead-peer", client.pid, "--netns", lab.netns, "--window", "0",
                        "--min-age", "1")
    f = finding(data, "dead-peer", pid=client.pid)
    assert f["severity"] == "warning"
    assert f["subject"]["direction"] == "out" and f["subject"]["peer"] == f"{SERVER}:8086"
    assert f["subject"]["port"] == 8086
    assert f"is the client: 1 connection to {SERVER}:8086 that stopped answering" in f["title"]
    assert ev(f)["services"] == [[f"{SERVER}:8086", 1]]
    code = [x["command"] for x in f["fixes"] if x["action"] == "code"][0]
    assert code.startswith("this process is the client") and "pool" in code
    assert "This host is the client here" in f["why"]


def test_idle_connections_without_keepalive_on_both_sides(lab):
    server = lab.spawn("idle-server", SERVER, "8087", "3")
    client = lab.spawn("hold", SERVER, "8087", "3", CLIENT)
    time.sleep(1.5)
    rc, data = doctor("--netns", lab.netns, "--window", "0", "--min-age", "1")
    srv = finding(data, "keepalive-off", pid=server.pid)
    assert srv["subject"]["direction"] == "in" and srv["subject"]["port"] == 8087
    assert ", the server:" in srv["title"] and srv["severity"] == "info"
    assert "so_keepalive" in [x for x in srv["fixes"] if x["action"] == "code"][0]["command"]
    cli = finding(data, "keepalive-off", pid=client.pid)
    assert cli["subject"]["direction"] == "out" and cli["subject"]["peer"] == f"{SERVER}:8087"
    assert cli["severity"] == "info" and "is the client" in cli["title"]
    assert ev(cli)["idle_sockets_without_keepalive"] == 3
    assert [x for x in cli["fixes"] if x["action"] == "code"][0]["command"].startswith(
        "this process is the client")
    ka = [x for x in cli["fixes"] if x["action"] == "keepalive"][0]
    assert ka["params"]["pid"] == client.pid
