"""nginx's configuration is read as files, never by running a binary (issue 9, item 1).

The attack: any user names a binary `nginx`; the old doctor ran /proc/PID/exe -T
as root. Here the binary appends its parent's pid to a marker file when run
other than as `nginx serve`; the doctor runs as root; the marker must not name
it. (Only the doctor's own pid counts: on a shared machine any other root
process running an older halfopen doctor does run it, within seconds.) Then a real Debian nginx
(scripts/install-deps --test), started on its own port in a test namespace
with its own configuration, has keepalive_timeout read from its files, with
an include glob.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
from tests.helpers import HALFOPEN
from tests.security.conftest import halfopen, one_line

FAKE = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "serve") == 0) { for (;;) pause(); }
    FILE *f = fopen(MARKER, "a");
    if (f) { fprintf(f, "%d\n", (int)getppid()); fclose(f); }
    return 0;
}
"""
NOBODY = 65534
OTHER = 4242


@pytest.fixture
def public_dir() -> Iterator[str]:
    """A 0755 directory in /tmp (pytest's tmp_path is 0700: nobody could not run from it)."""
    d = tempfile.mkdtemp(prefix="hoS-")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the fake nginx")
def test_a_users_binary_named_nginx_is_never_run(public_dir, tmp_path):
    marker = tmp_path / "executed-as-root"
    binary = os.path.join(public_dir, "nginx")
    subprocess.run(["cc", "-O", "-o", binary, f'-DMARKER="{marker}"', "-x", "c", "-"],
                   input=FAKE, text=True, check=True)
    evil_conf = os.path.join(public_dir, "evil.conf")
    with open(evil_conf, "w") as f:
        f.write("http { keepalive_timeout 1s; }\n")
    os.chown(binary, NOBODY, NOBODY)
    os.chown(evil_conf, OTHER, OTHER)  # another user's file: neither root's nor the master's
    p = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          binary, "serve", "-c", evil_conf])
    try:
        for _ in range(100):  # until the kernel names it nginx
            try:
                with open(f"/proc/{p.pid}/comm") as f:
                    if f.read().strip() == "nginx":
                        break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        assert os.readlink(f"/proc/{p.pid}/exe") == binary
        doctor = _started("doctor", "--window", "0", "-v")
        out, err = doctor.communicate(timeout=120)
        assert doctor.returncode in (0, 1, 2), err
        assert doctor.pid not in _ran_by(marker), "the doctor ran a user's binary as root"
        # a master not run by root names no file for root to read (issue 20)
        assert f"nginx master pid {p.pid} runs as uid {NOBODY}: its configuration was not " \
               "read" in out, out
        plan = _started("fix", "--window", "0")  # the fix plan runs the doctor too
        _out, err = plan.communicate(timeout=120)
        assert plan.pid not in _ran_by(marker) and "Traceback" not in err
    finally:
        _stop(p)


def _started(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([*HALFOPEN, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)


def _ran_by(marker) -> set[int]:
    """The parent pids of every run of the fake binary other than its own start."""
    return {int(x) for x in marker.read_text().split()} if marker.exists() else set()


NGINX_CONF = """
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include conf.d/*.conf;
    server {{ listen 127.0.0.1:{port}; keepalive_timeout 17s; }}
}}
"""


@pytest.fixture
def nginx_dir(public_dir) -> str:
    os.mkdir(os.path.join(public_dir, "conf.d"), 0o755)
    with open(os.path.join(public_dir, "conf.d", "ka.conf"), "w") as f:
        f.write("keepalive_timeout 23s;  # from an include glob\n")
    with open(os.path.join(public_dir, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(d=public_dir, port=18089))
    return public_dir


@pytest.fixture
def nginx(nginx_dir, netns) -> Iterator[subprocess.Popen]:
    if not os.path.exists("/usr/sbin/nginx"):
        pytest.skip("nginx is not installed (scripts/install-deps --test)")
    p = subprocess.Popen(["ip", "netns", "exec", netns, "/usr/sbin/nginx", "-c",
                          os.path.join(nginx_dir, "nginx.conf"), "-g", "daemon off;"],
                         stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            ss = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltn", "sport = :18089"],
                                capture_output=True, text=True).stdout
            if ss.strip() or p.poll() is not None:
                break
            time.sleep(0.05)
        assert p.poll() is None, p.stderr.read()
        yield p
    finally:
        _stop(p)


def _nginx_facts(netns: str, tmp_path, *extra: str) -> dict:
    snap = tmp_path / "snap.json"
    proc = halfopen("doctor", "--window", "0", "--netns", netns, "--save-snapshot", str(snap),
                    *extra)
    assert proc.returncode in (0, 1, 2), proc.stderr
    return json.loads(snap.read_text())["doctor"]["nginx"] or {}


def test_debian_nginx_keepalive_read_from_its_files(nginx, nginx_dir, netns, tmp_path):
    facts = _nginx_facts(netns, tmp_path)
    assert nginx.pid in facts["pids"]  # `ip netns exec` execs nginx: same pid
    assert facts["config"] == os.path.join(nginx_dir, "nginx.conf")  # its -c: evidence names it
    assert ["http", 23.0] in facts["keepalive_timeouts"], facts
    assert ["server", 17.0] in facts["keepalive_timeouts"], facts
    assert {"address": "127.0.0.1:18089", "port": 18089, "so_keepalive": None,
            "server_name": ""} in facts["listens"]


def test_a_group_writable_include_is_refused_unless_named(nginx, nginx_dir, netns, tmp_path):
    include = os.path.join(nginx_dir, "conf.d", "ka.conf")
    os.chmod(include, 0o666)
    proc = halfopen("doctor", "--window", "0", "--netns", netns)
    assert f"{include} is writable by group or others (mode 666)" in proc.stdout, proc.stdout
    os.chmod(include, 0o644)
    os.chown(include, NOBODY, NOBODY)  # neither root nor the master's uid
    facts = _nginx_facts(netns, tmp_path)
    assert ["http", 23.0] not in facts.get("keepalive_timeouts", [])
    # --nginx-config: the operator names the file; its owner is trusted for its includes
    own = os.path.join(nginx_dir, "nginx.conf")
    os.chown(own, NOBODY, NOBODY)
    facts = _nginx_facts(netns, tmp_path, "--nginx-config", own)
    assert ["http", 23.0] in facts["keepalive_timeouts"], facts


def test_nginx_config_that_cannot_be_read_is_a_usage_error(tmp_path):
    proc = halfopen("doctor", "--window", "0", "--nginx-config", str(tmp_path / "none.conf"))
    assert proc.returncode == 64
    assert "No such file" in one_line(proc.stderr)
