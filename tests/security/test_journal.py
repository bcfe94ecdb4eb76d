"""The write-ahead journal (issue 9, item 6): a run killed between an intent and
its change, and a journal on a full disk. Sysctls inside a test namespace only.

HALFOPEN_TEST_PAUSE_AFTER_INTENT (test-only, documented in docs/security.md)
makes `fix --apply` sleep after each intent is on disk, so SIGKILL can land
exactly between the intent and its change.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests.helpers import start_halfopen
from tests.security.conftest import ns_sysctl, one_line, run_halfopen, set_ns_sysctl

from halfopen.model.finding import Finding, Fix
from halfopen.model.subject import Subject

KA, SOMAX = "net.ipv4.tcp_keepalive_time", "net.core.somaxconn"


def _findings(tmp_path, ns: str) -> str:
    fixes = [Fix("sysctl", "", True, {"key": KA, "value": "300", "netns": ns}),
             Fix("sysctl", "", True, {"key": SOMAX, "value": "8192", "netns": ns})]
    finding = Finding("keepalive-off", "warning", "c", "t", Subject(ns), [], fixes, "why")
    path = tmp_path / "doctor.json"
    path.write_text(json.dumps({"schema": "halfopen.doctor/1", "findings": [finding.to_dict()]}))
    return str(path)


def _lines(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(x) for x in f if x.endswith("\n")]
    except FileNotFoundError:
        return []


def _kill_at_second_intent(tmp_path, ns: str, journal: str) -> None:
    p = start_halfopen("fix", "--findings", _findings(tmp_path, ns), "--apply", "--journal", journal,
                       env={"HALFOPEN_TEST_PAUSE_AFTER_INTENT": "5"}, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and \
                sum(1 for e in _lines(journal) if e.get("intent")) < 2:
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.kill()
        p.wait(timeout=10)
    kinds = [(e["kind"], e.get("target")) for e in _lines(journal)]
    assert kinds == [("sysctl", KA), ("done", None), ("sysctl", SOMAX)], kinds


def test_sigkill_between_intent_and_change_then_rollback(tmp_path, netns):
    journal = str(tmp_path / "journal.jsonl")
    _kill_at_second_intent(tmp_path, netns, journal)
    assert (ns_sysctl(netns, KA), ns_sysctl(netns, SOMAX)) == ("300", "4096")
    proc = run_halfopen("fix", "--rollback", "--journal", journal)
    assert proc.returncode == 0, proc.stderr
    assert "restored" in proc.stdout and "never made" in proc.stdout
    assert (ns_sysctl(netns, KA), ns_sysctl(netns, SOMAX)) == ("7200", "4096")


def test_rollback_of_an_intent_whose_change_did_happen(tmp_path, netns):
    journal = str(tmp_path / "journal.jsonl")
    _kill_at_second_intent(tmp_path, netns, journal)
    set_ns_sysctl(netns, SOMAX, "8192")  # as if the write landed just before the kill
    proc = run_halfopen("fix", "--rollback", "--journal", journal)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("restored") == 2, proc.stdout
    assert (ns_sysctl(netns, KA), ns_sysctl(netns, SOMAX)) == ("7200", "4096")


FULL_DISK = r"""
set -e
D="$1"; shift
mount -t tmpfs -o size=64k,mode=0700 halfopen-test "$D"
dd if=/dev/zero of="$D/filler" bs=4k count=64 2>/dev/null || true
set +e
"$@"
echo "exit=$?"
echo "journal_bytes=$(cat "$D/journal.jsonl" 2>/dev/null | wc -c)"
umount "$D"
"""


def test_full_journal_disk_stops_before_any_change(tmp_path, netns):
    full = tmp_path / "full"
    full.mkdir()
    journal = str(full / "journal.jsonl")
    # a private mount namespace: the 64k tmpfs goes away with it, the host never sees it
    on_full_disk = ("unshare", "--mount", "--propagation", "private", "sh", "-c", FULL_DISK, "sh",
                    str(full))
    proc = run_halfopen("fix", "--findings", _findings(tmp_path, netns), "--apply",
                        "--journal", journal, prefix=on_full_disk)
    assert "exit=2" in proc.stdout, proc.stdout + proc.stderr
    line = one_line(proc.stderr)
    assert "cannot write the journal" in line and "No space left" in line, line
    assert "journal_bytes=0" in proc.stdout  # no torn line left behind
    assert (ns_sysctl(netns, KA), ns_sysctl(netns, SOMAX)) == ("7200", "4096")
    assert not os.path.ismount(full) and os.listdir(full) == []
