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

import contextlib
import ctypes
import doctest
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from tests.helpers import start_halfopen
from tests.security.conftest import one_line, run_halfopen

from halfopen.collect import config_files, nginx_conf
from halfopen.collect.nginx_conf import parse

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
    return start_halfopen(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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
    proc = run_halfopen("doctor", "--window", "0", "--netns", netns, "--save-snapshot", str(snap),
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
    proc = run_halfopen("doctor", "--window", "0", "--netns", netns)
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
    proc = run_halfopen("doctor", "--window", "0", "--nginx-config", str(tmp_path / "none.conf"))
    assert proc.returncode == 64
    assert "No such file" in one_line(proc.stderr)


# --- issue 20: a master not run by root names no file; one budget for a whole walk -----------

BIG = 256 << 10  # one file, included 255 times: 30.5 s and 556 MB for the doctor before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(*argv: str, timeout: float = 120) -> tuple[int, str, str, float, float, int]:
    """(exit, stdout, stderr, seconds, peak RSS MiB, pid) of one halfopen run: wait4 gives
    that child's own rusage (RUSAGE_CHILDREN would be the largest child so far). A run
    past `timeout` fails the test; it is killed whatever happens."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        p = start_halfopen(*argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True)
        done = 0
        try:
            while True:
                done, status, usage = os.wait4(p.pid, os.WNOHANG)
                if done:
                    break
                assert time.monotonic() - t0 < timeout, f"halfopen {argv} ran past {timeout} s"
                time.sleep(0.01)
        finally:
            if not done:
                p.kill()
                os.waitpid(p.pid, 0)
            p.returncode = -1  # reaped here; Popen must not wait for it again
        seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return (os.waitstatus_to_exitcode(status), out.read(), err.read(), seconds,
                usage.ru_maxrss / 1024, p.pid)


# What nginx_conf.read() alone costs, in a fresh interpreter: the doctor's own peak
# RSS follows the host's socket table (other tests' sockets on a shared machine).
# VmHWM, not ru_maxrss: Linux carries the parent's peak over fork and exec.
READ_COST = r"""
import json, sys, time
from halfopen.collect import nginx_conf
from halfopen.model.snapshot import Snapshot
def kib(key):
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(key + ":"))
rss0 = kib("VmRSS")
t, cpu = time.monotonic(), time.thread_time()
conf, note = nginx_conf.read(Snapshot("h", "k", "t", "procfs", [], []), config=sys.argv[1] or None)
print(json.dumps({"ms": (time.monotonic() - t) * 1000, "cpu_ms": (time.thread_time() - cpu) * 1000,
                  "mib": (kib("VmHWM") - rss0) / 1024, "note": note}))
"""


def _read_cost(config: str = "") -> dict:
    p = subprocess.run([sys.executable, "-c", READ_COST, config], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    cost = json.loads(p.stdout)
    print(f"nginx_conf.read({config or 'the running masters'}): {cost['ms']:.0f} ms, "
          f"{cost['cpu_ms']:.0f} ms CPU, +{cost['mib']:.0f} MiB")
    return cost


def _comment(size: int) -> str:
    """`size` bytes of comments in lines of 4 KiB (nginx's longest): a token a line,
    so cheap to parse."""
    line = "#" + "x" * 4094 + "\n"
    return (line * (size // len(line) + 1))[:size]


def _write(path: str, text: str, owner: int = 0, mode: int = 0o644) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, owner, owner)
    os.chmod(path, mode)
    return path


def _start_nginx(argv: list[str], port: int, runner=subprocess.Popen) -> subprocess.Popen:
    if not os.path.exists("/usr/sbin/nginx"):
        pytest.skip("nginx is not installed (scripts/install-deps --test)")
    p = runner([*argv, "-g", "daemon off;"], stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0 or p.poll() is not None:
                break
        time.sleep(0.05)
    if p.poll() is not None:
        raise AssertionError(f"nginx did not start: {p.stderr.read() if p.stderr else ''}")
    return p


@contextlib.contextmanager
def _openers(path: str) -> Iterator[Callable[[], set[int]]]:
    """fanotify(7) on `path`: yields a function giving the pids that opened it so far
    (other root processes on the machine may open it too: count only ours)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fan = libc.fanotify_init(0x1 | 0x2, os.O_RDONLY)  # FAN_CLOEXEC | FAN_NONBLOCK, FAN_CLASS_NOTIF
    if fan < 0:
        pytest.skip(f"fanotify_init: {os.strerror(ctypes.get_errno())}")
    seen: set[int] = set()

    def openers() -> set[int]:
        while True:
            try:
                data = os.read(fan, 4096)
            except BlockingIOError:
                return seen
            off = 0
            while off < len(data):  # struct fanotify_event_metadata
                size, _ver, _res, _mlen, _mask, fd, pid = struct.unpack_from("=IBBHQii", data, off)
                if fd >= 0:
                    os.close(fd)
                seen.add(pid)
                off += size

    try:
        # FAN_MARK_ADD, FAN_OPEN, AT_FDCWD
        assert libc.fanotify_mark(fan, 1, ctypes.c_uint64(0x20), -100, os.fsencode(path)) == 0
        yield openers
    finally:
        os.close(fan)


def test_a_users_nginx_master_names_no_file_for_root(attacker, public_dir, tmp_path):
    """A real nginx started by an unprivileged user with -c its own file; then the user
    points that file at a root-only secret (0600, like /etc/shadow) and at one 256 KiB
    file included 255 times. Root's doctor reads none of it: one note, no secret, cheap."""
    marker = f"hoS3cr3t{uuid.uuid4().hex}"
    secret = _write(os.path.join(public_dir, "shadow"),
                    f"root:$6${marker}:19000:0:99999:7:::\nlisten {marker};\n", mode=0o600)
    # the user's own directory: attacker.home lies under pytest's 0700 /tmp/pytest-of-root,
    # which the user cannot traverse, so nginx (as that user) could not open its files there
    home, port = os.path.join(public_dir, "home"), _free_port()
    os.mkdir(home, 0o755)
    os.chown(home, attacker.uid, attacker.gid)
    own = partial(_write, owner=attacker.uid)
    conf = own(os.path.join(home, "nginx.conf"),
               f"pid {home}/nginx.pid;\nerror_log {home}/error.log;\n"
               "events { worker_connections 16; }\n"
               f"http {{ access_log off; client_body_temp_path {home}/body; "
               f"proxy_temp_path {home}/proxy; fastcgi_temp_path {home}/fcgi; "
               f"uwsgi_temp_path {home}/uwsgi; scgi_temp_path {home}/scgi;\n"
               f"  server {{ listen 127.0.0.1:{port}; }} }}\n")
    nginx = _start_nginx(["/usr/sbin/nginx", "-e", f"{home}/error.log", "-c", conf], port,
                         runner=attacker.run)
    try:
        assert os.stat(f"/proc/{nginx.pid}").st_uid == attacker.uid
        # nginx read its file at start; now the file names what the user cannot read
        big = own(os.path.join(home, "big.conf"),
                  ("keepalive_timeout 1s; listen 127.0.0.1:1;\n" * (BIG // 42 + 1))[:BIG])
        many = own(os.path.join(home, "many.conf"), f"include {big};\n" * 255)
        own(conf, f"http {{ include {secret}; include {many}; }}\n")
        snap = tmp_path / "snap.json"
        with _openers(secret) as openers:
            code, out, err, seconds, rss, json_pid = _timed("doctor", "--json", "--window", "0",
                                                            "--save-snapshot", str(snap))
            _c, text, verbose_err, _s, _m, text_pid = _timed("doctor", "--window", "0", "-v")
            assert not openers() & {json_pid, text_pid}, "the doctor opened the root-only file"
        print(f"\nattacker's nginx: doctor --json {seconds * 1000:.0f} ms, {rss:.0f} MiB peak RSS")
        assert code in (0, 1, 2) and "Traceback" not in err + verbose_err, err
        # the whole doctor reads the host's sockets too (4-8 s here while other tests held
        # 130,000 TIME_WAIT); _read_cost bounds the configuration's own part tightly
        assert seconds < 30, f"the doctor took {seconds:.1f} s"
        cost = _read_cost()
        assert cost["ms"] < 5000 and cost["mib"] < 64, cost  # before: 30.5 s, 556 MB
        for shown_out in (out, err, text, verbose_err, snap.read_text()):
            assert marker not in shown_out, "root's secret reached the doctor's output"
        note = (f"nginx master pid {nginx.pid} runs as uid {attacker.uid}: its configuration "
                "was not read")
        assert note in text, text
        facts = json.loads(snap.read_text())["doctor"]["nginx"] or {}  # others' nginx may run
        assert "127.0.0.1:1" not in [x["address"] for x in facts.get("listens", [])], facts
    finally:
        _stop(nginx)


def test_a_root_nginx_past_the_budget_keeps_what_was_read(public_dir, netns, tmp_path):
    """A real nginx run by root whose includes pass the budget: 257 files (one 256 KiB
    comment, included 255 times, which nginx accepts). The walk stops at the
    budget with one note and keeps what came before."""
    port = 18091
    big = _write(os.path.join(public_dir, "big.conf"), _comment(BIG))
    many = _write(os.path.join(public_dir, "many.conf"), f"include {big};\n" * 255)
    conf = _write(os.path.join(public_dir, "nginx.conf"), NGINX_CONF.format(
        d=public_dir, port=port).replace("include conf.d/*.conf;",
                                         f"keepalive_timeout 19s;\n    include {many};"))
    nginx = _start_nginx(["ip", "netns", "exec", netns, "/usr/sbin/nginx", "-c", conf], port,
                         runner=partial(_in_netns_popen, netns, port))
    try:
        snap = tmp_path / "snap.json"
        code, out, err, seconds, rss, _pid = _timed("doctor", "--window", "0", "--netns", netns, "-v",
                                              "--save-snapshot", str(snap))
        print(f"\nroot's nginx past the budget: doctor {seconds * 1000:.0f} ms, {rss:.0f} MiB")
        assert code in (0, 1, 2) and "Traceback" not in err, err
        assert (f"nginx pid {nginx.pid}: configuration read in part (stopped at {big}: past 256 "
                "files; the rest was not read)") in out, out
        # facts merge every master's: on a shared machine other tests' nginx may run too
        facts = json.loads(snap.read_text())["doctor"]["nginx"]
        assert ["http", 19.0] in facts["keepalive_timeouts"], facts  # read before the stop
        assert f"127.0.0.1:{port}" not in [x["address"] for x in facts["listens"]], facts
        assert seconds < 30
        cost = _read_cost()
        assert cost["ms"] < 5000 and cost["mib"] < 64, cost
    finally:
        _stop(nginx)


def _in_netns_popen(netns: str, port: int, argv: list[str], **kw) -> subprocess.Popen:
    """nginx in the test's namespace; its port is probed there (not on the host's loopback)."""
    p = subprocess.Popen(argv, **kw)
    for _ in range(200):
        ss = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltn", f"sport = :{port}"],
                            capture_output=True, text=True).stdout
        if ss.strip() or p.poll() is not None:
            break
        time.sleep(0.05)
    return p


def test_nginx_config_named_by_the_operator_is_read_within_the_budget(public_dir, tmp_path):
    """--nginx-config FILE is still read, whoever owns it; the same budget bounds its
    includes: bytes read in all (eight distinct 1 MiB files), and directives kept (one
    256 KiB file of directives included 255 times: read and parsed once)."""
    own = _write(os.path.join(public_dir, "named.conf"),
                 "http { keepalive_timeout 31s; server { listen 127.0.0.1:8088; } }\n",
                 owner=NOBODY)
    snap = tmp_path / "snap.json"
    code, out, err, _s, _m, _pid = _timed("doctor", "--window", "0", "--nginx-config", own,
                                    "--save-snapshot", str(snap))
    assert code in (0, 1, 2) and "Traceback" not in err, err
    facts = json.loads(snap.read_text())["doctor"]["nginx"]
    assert facts["config"] == own and facts["keepalive_timeouts"] == [["http", 31.0]], facts
    assert "read in part" not in out

    mib = _comment(1 << 20)  # few tokens: what binds is the bytes read, not the CPU
    parts = [_write(os.path.join(public_dir, f"part{i}.conf"), mib) for i in range(8)]
    bytes_conf = _write(os.path.join(public_dir, "bytes.conf"), "http { keepalive_timeout 5s; "
                        + "".join(f"include {p}; " for p in parts) + "}\n")
    code, out, err, seconds, rss, _pid = _timed("doctor", "--window", "0", "--nginx-config",
                                          bytes_conf, "--save-snapshot", str(snap))
    print(f"\n8 MiB named: doctor {seconds * 1000:.0f} ms, {rss:.0f} MiB")
    assert code in (0, 1, 2) and "Traceback" not in err, err
    assert f"--nginx-config {bytes_conf} read in part (stopped at {parts[3]}: past 4 MiB " \
           "read)" in out, out
    assert json.loads(snap.read_text())["doctor"]["nginx"]["keepalive_timeouts"] == [["http", 5.0]]

    big = _write(os.path.join(public_dir, "dirs.conf"),
                 ("keepalive_timeout 1s; listen 127.0.0.1:1;\n" * (BIG // 42 + 1))[:BIG])
    many = _write(os.path.join(public_dir, "many.conf"), f"include {big};\n" * 255)
    items_conf = _write(os.path.join(public_dir, "items.conf"), f"http {{ include {many}; }}\n")
    code, out, err, seconds, rss, _pid = _timed("doctor", "--window", "0", "--nginx-config",
                                          items_conf, "--save-snapshot", str(snap))
    print(f"255 x 256 KiB of directives named: doctor {seconds * 1000:.0f} ms, {rss:.0f} MiB")
    assert code in (0, 1, 2) and "Traceback" not in err, err
    assert f"--nginx-config {items_conf} read in part (stopped at {big}: past " in out, out
    assert seconds < 30
    for config in (items_conf, bytes_conf):
        cost = _read_cost(config)
        assert cost["ms"] < 5000 and cost["mib"] < 64, cost


def test_unterminated_quotes_cost_one_pass(public_dir):
    """`"\\"\\...` left every quote unterminated: the tokenizer rescanned the rest of the
    file from each one (15 s for 64 KiB, quadratic). Now each token is matched once."""
    bad = _write(os.path.join(public_dir, "quotes.conf"),
                 'http { keepalive_timeout 7s; }\n' + '"\\' * (128 << 10))
    code, out, err, seconds, _rss, _pid = _timed("doctor", "--window", "0", "--nginx-config", bad)
    assert code in (0, 1, 2) and "Traceback" not in err, err
    assert seconds < 30, f"{seconds:.1f} s for 256 KiB of quotes"  # before: hours
    assert parse('http { keepalive_timeout 7s; } "\\"\\"\\').keepalive_timeouts == [("http", 7.0)]


@pytest.mark.parametrize("mod", [nginx_conf, config_files])
def test_docstring_examples(mod):
    result = doctest.testmod(mod)
    assert result.failed == 0 and result.attempted > 0


def test_who_may_name_files_for_root(attacker, public_dir):
    """untrusted(): root from a root-owned binary may; a user may not, nor root running
    a binary another user owns or may write (copies of /bin/sleep, never a found one)."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    theirs = os.path.join(public_dir, "theirs")
    shutil.copy(sleep, theirs)
    os.chown(theirs, NOBODY, NOBODY)
    writable = os.path.join(public_dir, "writable")
    shutil.copy(sleep, writable)
    os.chmod(writable, 0o775)
    procs = {"root": subprocess.Popen([sleep, "60"]),
             "user": attacker.run([sleep, "60"]),
             "theirs": subprocess.Popen([theirs, "60"]),
             "writable": subprocess.Popen([writable, "60"])}
    try:
        why = {}
        for name, p in procs.items():
            fd = os.open(f"/proc/{p.pid}", os.O_RDONLY | os.O_DIRECTORY)
            try:
                why[name] = config_files.untrusted(fd)
            finally:
                os.close(fd)
        assert why == {"root": None, "user": f"runs as uid {attacker.uid}",
                       "theirs": f"runs from a binary not owned by root (uid {NOBODY})",
                       "writable": "runs from a binary others may write (mode 775)"}, why
        # a /proc/PID fd names that process only: once it is gone, reads through it fail
        fd = os.open(f"/proc/{procs['root'].pid}", os.O_RDONLY | os.O_DIRECTORY)
        _stop(procs["root"])
        with pytest.raises(OSError):
            config_files.untrusted(fd)
        os.close(fd)
    finally:
        for p in procs.values():
            _stop(p)


def test_a_file_included_200_times_is_read_and_parsed_once(public_dir):
    big = _write(os.path.join(public_dir, "big.conf"),
                 ("listen 127.0.0.1:1;\n" * (BIG // 20 + 1))[:BIG])
    many = _write(os.path.join(public_dir, "many.conf"), f"include {big};\n" * 200)
    main = _write(os.path.join(public_dir, "nginx.conf"), f"http {{ include {many}; }}\n")
    budget, cache = config_files.Budget(config_files.Limits(cpu_s=60, wall_s=60, items=10**7)), {}
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        walk = nginx_conf._Walk(config_files.ConfigFiles(root, budget, cache), main)
        walk.run()
    finally:
        os.close(root)
    assert budget.files == 202 and len(cache) == 3  # opened each time, parsed once
    assert budget.bytes == sum(os.path.getsize(f) for f in (main, many, big))
    assert len(walk.conf.listens) == 200 * (BIG // 20)
