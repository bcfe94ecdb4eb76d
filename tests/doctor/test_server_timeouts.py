"""Real servers' idle timeouts read from their own files (issue 22 item 3): haproxy, redis,
Apache httpd, Debian's packages (scripts/install-deps --test).

Each test starts its server as root inside a network namespace it creates, with its
own configuration (a 2 s idle timeout) in tmp_path, and a real client pool in that
namespace: redis-py's ConnectionPool, a requests.Session (urllib3 keep-alive). The
pool is left idle past the server's timeout, so the server closes and the pool's
connections sit in CLOSE_WAIT; then `doctor --json --window 0 --min-age 0` names the
server's setting, from the right file and line. Everything started is stopped in a
finally, and `remove_netns` kills what is left in the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from tests.helpers import run_halfopen, sh

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PORT = 18470
POOL = 3
IDLE_S = 2


def _write(path, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return str(path)


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def _listening(netns: str, port: int, p: subprocess.Popen, what: str) -> None:
    for _ in range(200):
        ss = sh("ss", "-Hltn", f"sport = :{port}", netns=netns).stdout
        if ss.strip():
            return
        if p.poll() is not None:
            break
        time.sleep(0.05)
    err = p.stderr.read() if p.stderr and p.poll() is not None else ""
    raise AssertionError(f"{what} did not listen on {port}: {err}")


def _started(netns: str, argv: list[str], what: str, port: int = PORT) -> subprocess.Popen:
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        pytest.skip(f"{argv[0]} is not installed (scripts/install-deps --test)")
    p = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _listening(netns, port, p, what)
    except BaseException:
        _stop(p)
        raise
    return p


# a client pool: takes POOL connections at once, gives them back, then waits
REDIS_POOL = f"""
import sys, time, redis
pool = redis.ConnectionPool(host="127.0.0.1", port={PORT})
conns = [pool.get_connection("PING") for _ in range({POOL})]
for c in conns:
    c.send_command("PING"); assert c.read_response() in (b"PONG", "PONG")
for c in conns:
    pool.release(c)
print("ready", flush=True)
time.sleep(600)
"""

HTTP_POOL = f"""
import time, requests
from concurrent.futures import ThreadPoolExecutor
s = requests.Session()
a = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize={POOL})
s.mount("http://", a)
with ThreadPoolExecutor({POOL}) as ex:  # POOL requests at once: POOL connections
    codes = list(ex.map(lambda _: s.get("http://127.0.0.1:{PORT}/x", timeout=5).status_code,
                        range({POOL})))
assert codes == [200] * {POOL}, codes
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def pool_in(netns) -> Iterator:
    """pool_in(code): a client pool (Python code) running in the namespace, stopped after."""
    started: list[subprocess.Popen] = []

    def run(code: str) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(p)
        line = p.stdout.readline() if p.stdout else ""
        assert line.strip() == "ready", p.stderr.read() if p.stderr else ""
        return p

    try:
        yield run
    finally:
        for p in started:
            _stop(p)


def _pool_finding(netns: str, client_pid: int) -> dict:
    """The client's close-wait-leak finding once all POOL connections are in CLOSE_WAIT."""
    deadline = time.monotonic() + 30
    while True:
        ss = sh("ss", "-Htn", "state", "close-wait", f"dport = :{PORT}", netns=netns).stdout
        if len(ss.strip().splitlines()) >= POOL or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    p = run_halfopen("doctor", "--json", "--netns", netns, "--window", "0", "--min-age", "0",
                     timeout=120)
    assert p.returncode in (0, 1, 2), p.stderr
    data = json.loads(p.stdout)
    found = [f for f in data["findings"] if f["id"] == "close-wait-leak"
             and f["subject"].get("pid") == client_pid]
    assert found, (ss, [f["title"] for f in data["findings"]], data.get("notes"))
    return found[0]


def _evidence(f: dict, what: str) -> dict:
    return next(e for e in f["evidence"] if e["what"] == what)


def test_redis_timeout_names_the_pools_close_wait(netns, tmp_path, pool_in):
    conf = _write(tmp_path / "redis.conf",
                  f"port {PORT}\nbind 127.0.0.1\ndaemonize no\nsave \"\"\nappendonly no\n"
                  f"dir {tmp_path}\nlogfile \"\"\n"
                  "# redis retitles itself; the title names the file it was started with\n"
                  "proc-title-template \"{title} {listen-addr} {config-file}\"\n"
                  f"include {tmp_path}/timeouts.conf\n")
    _write(tmp_path / "timeouts.conf", f"timeout {IDLE_S}\ntcp-keepalive 15\n")
    redis = _started(netns, ["/usr/bin/redis-server", conf, "--daemonize", "no"], "redis")
    try:
        client = pool_in(REDIS_POOL)
        f = _pool_finding(netns, client.pid)
        assert f["title"].endswith(f"that the server closed after its {IDLE_S}s `timeout` (redis)") \
            or f"closed after its {IDLE_S}s `timeout` (redis)" in f["title"], f["title"]
        server = _evidence(f, "server_keepalive_timeout_s")
        assert server["value"] == IDLE_S
        assert server["source"] == f"{tmp_path}/timeouts.conf:1"  # the include, its line
        advice = [x["command"] for x in f["fixes"] if x["action"] == "code"][0]
        assert f"({IDLE_S}s `timeout` (redis)), e.g. 1600ms" in advice, advice
    finally:
        _stop(redis)


def test_haproxy_timeout_client_names_the_pools_close_wait(netns, tmp_path, pool_in):
    cfg = _write(tmp_path / "haproxy.cfg", f"""
global
    maxconn 64

defaults
    mode http
    timeout connect 1s
    timeout client {IDLE_S}s
    timeout server 5s

frontend web
    bind 127.0.0.1:{PORT}
    http-request return status 200 content-type text/plain string ok
""")
    haproxy = _started(netns, ["/usr/sbin/haproxy", "-db", "-f", cfg], "haproxy")
    try:
        client = pool_in(HTTP_POOL)
        f = _pool_finding(netns, client.pid)
        assert f"closed after its {IDLE_S}s `timeout client` (haproxy)" in f["title"], f["title"]
        server = _evidence(f, "server_keepalive_timeout_s")
        assert server["value"] == IDLE_S and server["source"] == f"{cfg}:8"
        # a saved snapshot carries haproxy's timeouts: the doctor on the file says the same
        snap = tmp_path / "snap.json"
        p = run_halfopen("doctor", "--netns", netns, "--window", "0", "--save-snapshot", str(snap),
                         timeout=120)
        assert p.returncode in (0, 1, 2), p.stderr
        p = run_halfopen("doctor", "--json", "--snapshot", str(snap), "--min-age", "0", timeout=120)
        again = [x for x in json.loads(p.stdout)["findings"] if x["id"] == "close-wait-leak"
                 and x["subject"].get("pid") == client.pid]
        assert again and f"closed after its {IDLE_S}s `timeout client` (haproxy)" in again[0]["title"]
    finally:
        _stop(haproxy)


APACHE_CONF = """
ServerRoot {d}
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
PidFile {d}/httpd.pid
ErrorLog {d}/error.log
DefaultRuntimeDir {d}
Mutex file:{d} default
Listen 127.0.0.1:{port}
DocumentRoot {d}/www
Timeout 30
KeepAlive On
KeepAliveTimeout 60
# Debian's layout: conf-enabled/ holds root's links to conf-available/
IncludeOptional conf-enabled/*.conf
"""


def test_apache_keepalivetimeout_names_the_pools_close_wait(netns, tmp_path, pool_in):
    d = str(tmp_path)
    os.mkdir(tmp_path / "www")
    _write(tmp_path / "www" / "x", "ok\n")
    os.mkdir(tmp_path / "conf-available")
    os.mkdir(tmp_path / "conf-enabled")
    _write(tmp_path / "conf-available" / "keepalive.conf",
           "# later than the main file's 60\n"
           f"KeepAliveTimeout {IDLE_S}\n")
    os.symlink("../conf-available/keepalive.conf", tmp_path / "conf-enabled" / "keepalive.conf")
    conf = _write(tmp_path / "httpd.conf", APACHE_CONF.format(d=d, port=PORT))
    apache = _started(netns, ["/usr/sbin/apache2", "-f", conf, "-DFOREGROUND"], "apache2")
    try:
        client = pool_in(HTTP_POOL)
        f = _pool_finding(netns, client.pid)
        assert f"closed after its {IDLE_S}s `KeepAliveTimeout` (Apache)" in f["title"], f["title"]
        server = _evidence(f, "server_keepalive_timeout_s")
        assert server["value"] == IDLE_S
        assert server["source"] == f"{d}/conf-enabled/keepalive.conf:2"  # root's link, followed
    finally:
        _stop(apache)


def test_a_proxy_middlebox_is_checked_against_haproxy(netns, tmp_path):
    """timeout-mismatch: haproxy behind an L7 LB (gcp-lb, 600 s) closes idle client
    connections after 2 s: the LB would reuse connections haproxy is closing."""
    cfg = _write(tmp_path / "haproxy.cfg",
                 f"defaults\n  mode http\n  timeout client 30s\n  timeout http-keep-alive {IDLE_S}s\n"
                 f"  timeout connect 1s\n  timeout server 5s\nfrontend web\n"
                 f"  bind 127.0.0.1:{PORT}\n  http-request return status 200\n")
    haproxy = _started(netns, ["/usr/sbin/haproxy", "-db", "-f", cfg], "haproxy")
    try:
        p = run_halfopen("doctor", "--json", "--netns", netns, "--window", "0", "--middlebox",
                         "gcp-lb", timeout=120)
        assert p.returncode in (0, 1, 2), p.stderr
        found = [f for f in json.loads(p.stdout)["findings"] if f["id"] == "timeout-mismatch"
                 and f["subject"].get("comm") == "haproxy"]
        assert found, p.stdout[-2000:]
        f = found[0]
        assert f["severity"] == "warning"
        assert f["title"].startswith(f"haproxy closes idle connections after {IDLE_S}s "
                                     f"(`timeout http-keep-alive {IDLE_S}s`)"), f["title"]
        fix = [x for x in f["fixes"] if x["action"] == "config"][0]
        assert fix["params"]["file"] == cfg
        assert fix["params"]["snippet"].startswith("timeout http-keep-alive 610s")
    finally:
        _stop(haproxy)

