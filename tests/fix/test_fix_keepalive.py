"""`halfopen keepalive`: retrofit onto a real server's sockets; a cut-off peer is reset."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time

import pytest
from tests.helpers import run_halfopen, sh


def ss_lines(netns: str, port: int) -> list[str]:
    out = sh("ss", "-tanpoH", "sport", "=", f":{port}", netns=netns).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_retrofit_dry_run_then_yes(netns, start_peer, run):
    peer = start_peer(2)
    words = ["--pid", str(peer.pid), "state", "established", "sport", "=", f":{peer.port}",
             "--idle", "30",
             "--interval", "5", "--count", "3"]
    code, out, _err = run("keepalive", *words)
    assert code == 0 and out.count("would set") == 2 and "dry run" in out
    assert not any("keepalive" in line for line in ss_lines(netns, peer.port))

    code, out, _err = run("keepalive", *words, "--yes", "--json")
    assert code == 0
    doc = json.loads(out)
    assert sorted(s["fd"] for s in doc["sockets"]) == sorted(peer.fds)
    for s in doc["sockets"]:
        assert s["result"] == "set"
        assert s["before"]["keepalive"] is False
        assert s["after"] == {"keepalive": True, "idle": 30, "interval": 5, "count": 3,
                              "user_timeout_ms": 0}
    estab = [line for line in ss_lines(netns, peer.port) if line.startswith("ESTAB")]
    assert len(estab) == 2 and all("timer:(keepalive," in line for line in estab)

    code, out, _err = run("keepalive", *words, "--yes")
    assert code == 0 and out.count("already set") == 2


def test_cut_off_peer_is_reset(netns, start_peer, run):
    peer = start_peer(1)
    idle, interval, count = 1, 1, 2
    code, _out, err = run("keepalive", "--pid", str(peer.pid), "sport", "=", f":{peer.port}",
                          "exclude", "listening", "--idle", str(idle), "--interval",
                          str(interval), "--count", str(count), "--user-timeout", "0", "--yes")
    assert code == 0, err
    # the peer vanishes: nothing the server sends reaches it any more
    sh("nft", "add table inet halfopen_test", netns=netns)
    sh("nft", "add chain inet halfopen_test out { type filter hook output priority 0 ; }",
       netns=netns)
    sh("nft", f"add rule inet halfopen_test out tcp sport {peer.port} drop", netns=netns)
    started = time.monotonic()
    errnos = peer.ask(f"wait {idle + interval * count + 5}", timeout=20)["errnos"]
    elapsed = time.monotonic() - started
    assert errnos == [errno.ETIMEDOUT]
    assert elapsed <= idle + interval * count + 2
    assert not [line for line in ss_lines(netns, peer.port) if line.startswith("ESTAB")]


def test_release_close_wait(netns, start_peer, run):
    peer = start_peer(2, close=True)
    code, out, _err = run("keepalive", "--pid", str(peer.pid), "state", "close-wait",
                          "--release", "--yes")
    assert code == 0 and out.count("released") >= 2 and "application's to close" in out
    deadline = time.monotonic() + 5
    while any(not line.startswith("LISTEN") for line in ss_lines(netns, peer.port)):
        assert time.monotonic() < deadline, ss_lines(netns, peer.port)
        time.sleep(0.1)
    for fd in peer.fds:  # the fds are still the application's
        assert os.readlink(f"/proc/{peer.pid}/fd/{fd}").startswith("socket:[")
    assert peer.ask("send")["errnos"] == [errno.EPIPE] * 2


def test_gone_process_is_one_line(run):
    from halfopen.fix import failures, retrofit

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    code, _out, err = run("keepalive", "--pid", str(child.pid), "--yes")
    assert code == 64 and err.strip() == f"halfopen: no process with pid {child.pid}"
    with pytest.raises(failures.ProcessGone, match=r"gone \(ESRCH\)"):
        retrofit.retrofit(child.pid, [], retrofit.Settings(60, 10, 6), apply=True)


def test_not_permitted_is_one_line(netns, start_peer):
    peer = start_peer(1)
    assert peer.ask("nodump")["ok"]
    # without CAP_SYS_PTRACE a non-dumpable process's fds are out of reach
    drop = ("setpriv", "--bounding-set", "-sys_ptrace", "--inh-caps", "-sys_ptrace")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    cli = run_halfopen("keepalive", "--pid", str(peer.pid), "--yes", prefix=drop, env=env, timeout=30)
    assert cli.returncode == 3
    assert len(cli.stderr.strip().splitlines()) == 1 and "ptrace" in cli.stderr
    code = ("from halfopen.fix import borrowed_fds, failures\n"
            f"pfd = borrowed_fds.pidfd_open({peer.pid})\n"
            "try:\n"
            f"    borrowed_fds.pidfd_getfd(pfd, {peer.pid}, {peer.fds[0]})\n"
            "except failures.AccessDenied as exc:\n"
            "    print(exc)\n")
    lib = subprocess.run([*drop, sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=30)
    assert "EPERM" in lib.stdout and "PTRACE_MODE_ATTACH_REALCREDS" in lib.stdout, lib.stderr
