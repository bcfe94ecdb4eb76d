"""Actions bound to identity (issue 9, item 3): a namespace deleted and recreated
under its name, and a pid reused by another process, are never acted on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from tests.helpers import sh
from tests.security.conftest import ns_sysctl, run_halfopen, set_ns_sysctl

from halfopen.collect import doctor_input
from halfopen.collect import netns as netns_mod
from halfopen.diagnose.common import identify
from halfopen.kernel import current_identity
from halfopen.model.finding import Finding, Fix
from halfopen.model.subject import Subject

SYN = "net.ipv4.tcp_syncookies"
PIDREUSE = os.path.join(os.path.dirname(__file__), "pidreuse.py")


def _findings(tmp_path, ns: str, subject_extra: dict | None = None) -> str:
    fix = Fix("sysctl", "", True, {"key": SYN, "value": "1", "netns": ns})
    subject = Subject.from_dict({"netns": ns, **(subject_extra or {})})
    finding = Finding("syn-flood", "critical", "SYN flood", "t", subject, [], [fix], "why")
    path = tmp_path / "doctor.json"
    path.write_text(json.dumps({"schema": "halfopen.doctor/1", "findings": [finding.to_dict()]}))
    return str(path)


def _recreate(ns: str) -> tuple[int, int]:
    """Delete `ns` and create another under its name: (old cookie, new cookie)."""
    old = netns_mod.cookie(netns_mod.named(ns))
    sh("ip", "netns", "del", ns)
    sh("ip", "netns", "add", ns)
    return old, netns_mod.cookie(netns_mod.named(ns))


def test_rollback_refuses_a_namespace_recreated_under_its_name(tmp_path, netns):
    journal = str(tmp_path / "journal.jsonl")
    set_ns_sysctl(netns, SYN, "0")  # a lab had turned syncookies off; the fix turns them on
    proc = run_halfopen("fix", "--findings", _findings(tmp_path, netns), "--apply",
                        "--journal", journal)
    assert proc.returncode == 0, proc.stderr
    assert ns_sysctl(netns, SYN) == "1"
    old, new = _recreate(netns)
    assert old != new and ns_sysctl(netns, SYN) == "1"  # a fresh namespace's default
    proc = run_halfopen("fix", "--rollback", "--journal", journal)
    assert proc.returncode == 0, proc.stderr
    assert "not the one recorded" in proc.stdout and "left alone" in proc.stdout
    assert ns_sysctl(netns, SYN) == "1"  # the old code wrote 0 here: syncookies off
    again = run_halfopen("fix", "--rollback", "--journal", journal)  # nothing left pending
    assert "nothing to roll back" in again.stdout


def test_apply_skips_a_finding_about_a_namespace_since_recreated(tmp_path, netns):
    set_ns_sysctl(netns, SYN, "0")
    space = netns_mod.named(netns)
    recorded = {"netns_inode": space.inode, "netns_cookie": netns_mod.cookie(space)}
    path = _findings(tmp_path, netns, recorded)
    _recreate(netns)
    set_ns_sysctl(netns, SYN, "0")
    proc = run_halfopen("fix", "--findings", path, "--apply", "--json",
                        "--journal", str(tmp_path / "j.jsonl"))
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["outcome"] == "skipped" and "not the one recorded" in result["detail"]
    assert ns_sysctl(netns, SYN) == "0"


def test_fix_and_rollback_skip_a_reused_pid(tmp_path, netns):
    proc = subprocess.run(["ip", "netns", "exec", netns, "unshare", "--pid", "--fork",
                           "--mount-proc", sys.executable, PIDREUSE,
                           str(tmp_path / "doctor.json"), str(tmp_path / "journal.jsonl")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["a"] == r["b"] and r["a_start"] != r["b_start"], r  # the pid was reused
    assert r["code"] == 0, r["err"]
    results = json.loads(r["out"])["results"]
    assert [x["outcome"] for x in results] == ["skipped"] * 3, results
    assert all("is now another process" in x["detail"] for x in results), results
    assert r["applied"] == 0 and r["a_limits"] == [4096, 4096]  # the fix, while a ran
    assert r["b_established"] == 2  # b's connection was not destroyed
    assert r["rollback"] == 0 and "is now another process" in r["rollback_out"], r
    assert r["b_limits"] == [4096, 4096]  # not lowered to a's old 1024 by the rollback


def test_doctor_records_identity_as_it_reads(netns):
    """The identity in a live finding's subject is the one read with the process's fds
    and the namespace's facts (no second look at /proc after the rules)."""
    me = current_identity.process(os.getpid())
    space = netns_mod.named(netns)
    with socket.socket() as held:  # this process owns a socket: the owner scan reads it
        held.bind(("127.0.0.1", 0))
        held.listen()
        snap, _nginx, _note, _servers = doctor_input.take_live(
            (netns_mod.current(), space), window_s=0, read_nginx=False)
    assert snap.processes[os.getpid()].start_time == me.start_time
    findings = [Finding("fd-exhaustion", "warning", "c", "t", Subject("host", os.getpid())),
                Finding("syn-flood", "warning", "c", "t", Subject(netns)),
                Finding("fd-exhaustion", "warning", "c", "t", Subject(pid=2 ** 22 + 1))]
    identify(findings, snap)
    assert findings[0].subject.start_time == me.start_time
    assert findings[0].subject.netns_cookie == netns_mod.cookie(netns_mod.current())
    assert findings[1].subject.netns_inode == space.inode
    assert findings[1].subject.netns_cookie == netns_mod.cookie(space)
    # a pid the read did not see is not vouched for: fix refuses it
    assert findings[2].subject.start_time is None
