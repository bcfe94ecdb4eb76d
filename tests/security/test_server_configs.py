"""A user's own haproxy and redis name no file for root to read (issue 22 item 3).

Any user can run Debian's real /usr/sbin/haproxy and /usr/bin/redis-server (root-owned
binaries) as themselves with `-f ~/h.cfg` / `~/redis.conf`, then rewrite those files to
`include` a root-only secret. Root's doctor must read none of it: one note per server,
the files never opened (fanotify counts the opens by the doctor's pid), no secret in
any output. Then the readers' own doctests.
"""

from __future__ import annotations

import doctest
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
from tests.security.test_nginx import _openers, _stop, _timed, _write

from halfopen.collect import apache_conf, conf_lines, haproxy_conf, redis_conf, server_conf

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def home(attacker) -> Iterator[str]:
    """A directory of the attacker's, every user may enter (0755)."""
    d = tempfile.mkdtemp(prefix="hoS-srv-")
    os.chmod(d, 0o755)
    os.chown(d, attacker.uid, attacker.gid)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(p: subprocess.Popen, port: int, what: str) -> None:
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{what} did not start: {p.stderr.read() if p.stderr else ''}")


def test_a_users_haproxy_and_redis_name_no_file_for_root(attacker, home, tmp_path):
    for binary in ("/usr/sbin/haproxy", "/usr/bin/redis-server"):
        if not os.path.exists(binary):
            pytest.skip(f"{binary} is not installed (scripts/install-deps --test)")
    marker = f"hoS3cr3t{uuid.uuid4().hex}"
    secret = _write(str(tmp_path / "shadow"), f"timeout 1\nport 1\n# {marker}\n", mode=0o600)
    own = {"owner": attacker.uid}
    hport, rport = _free_port(), _free_port()
    cfg = _write(os.path.join(home, "h.cfg"),
                 f"defaults\n  mode tcp\n  timeout client 1s\n  timeout connect 1s\n"
                 f"  timeout server 1s\nlisten l\n  bind 127.0.0.1:{hport}\n"
                 f"  server s 127.0.0.1:{rport}\n", **own)
    rconf = _write(os.path.join(home, "redis.conf"),
                   f"port {rport}\nbind 127.0.0.1\nsave \"\"\ndir {home}\nlogfile \"\"\n"
                   "proc-title-template \"{title} {listen-addr} {config-file}\"\n", **own)
    haproxy = attacker.run(["/usr/sbin/haproxy", "-db", "-f", cfg], stderr=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, text=True)
    redis = attacker.run(["/usr/bin/redis-server", rconf, "--daemonize", "no"],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        _listening(haproxy, hport, "haproxy")
        _listening(redis, rport, "redis")
        # both read their files at start; now the files name what the user cannot read
        _write(rconf, f"include {secret}\n", **own)
        snap = tmp_path / "snap.json"
        with _openers(rconf) as conf_openers, _openers(secret) as secret_openers:
            code, out, err, seconds, _rss, json_pid = _timed(
                "doctor", "--json", "--window", "0", "--save-snapshot", str(snap))
            _c, text, err2, _s, _m, text_pid = _timed("doctor", "--window", "0", "-v")
            pids = {json_pid, text_pid}
            assert not conf_openers() & pids, "the doctor opened a user's redis.conf"
            assert not secret_openers() & pids, "the doctor opened the root-only file"
        print(f"\nusers' haproxy and redis: doctor --json {seconds * 1000:.0f} ms")
        assert code in (0, 1, 2) and "Traceback" not in err + err2, err + err2
        for shown_out in (out, err, text, err2, snap.read_text()):
            assert marker not in shown_out, "root's secret reached the doctor's output"
        for server, pid in (("haproxy", haproxy.pid), ("redis", redis.pid)):
            note = f"{server} master pid {pid} runs as uid {attacker.uid}: its configuration " \
                   "was not read"
            assert note in text, text
        servers = json.loads(snap.read_text())["doctor"]["servers"]
        for server, pid in (("haproxy", haproxy.pid), ("redis", redis.pid)):
            assert f"{server} master pid {pid} runs as uid {attacker.uid}: its configuration " \
                   "was not read" in servers["notes"]
        assert not [t for t in servers["timeouts"] if {haproxy.pid, redis.pid} & set(t["pids"])]
    finally:
        _stop(haproxy)
        _stop(redis)


@pytest.mark.parametrize("module", [conf_lines, haproxy_conf, redis_conf, apache_conf, server_conf])
def test_readers_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
