"""Files written as root never follow a planted symlink (issue 9, item 2).

Each writer is attacked twice: a symlink at the final path (refused with one
line, exit 64, the link's target untouched) and, where the old code used a
predictable temporary name (`OUT.tmp.PID`, `FILE.tmp.PID`, `FILE.bak`), a
symlink planted there (ignored: the new file is created O_EXCL|O_NOFOLLOW
under a random name). Run in-process where the old name held our own pid.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from tests.security.conftest import ns_sysctl, one_line, run_halfopen

from halfopen.cli.main import main
from halfopen.model.finding import Finding, Fix
from halfopen.model.subject import Subject

KEY = "net.ipv4.tcp_keepalive_time"


@pytest.fixture(scope="module")
def history_db(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("hist") / "h.db")
    proc = run_halfopen("watch", "--once", "--no-doctor", "--record", path)
    assert proc.returncode == 0, proc.stderr
    return path


def test_report_html_refuses_a_symlink(history_db, victim, tmp_path):
    out = tmp_path / "page.html"
    out.symlink_to(victim)
    proc = run_halfopen("report", history_db, "--html", str(out))
    assert proc.returncode == 64
    assert "symlink" in one_line(proc.stderr)
    assert out.is_symlink()


def test_report_html_ignores_the_old_temp_name(history_db, victim, tmp_path, capsys):
    out = tmp_path / "page.html"
    planted = tmp_path / f"page.html.tmp.{os.getpid()}"  # the old predictable name
    planted.symlink_to(victim)
    assert main(["report", history_db, "--html", str(out)]) == 0
    assert not out.is_symlink() and out.read_text().lstrip().startswith("<!")
    assert planted.is_symlink()  # left as it was
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".page")] == []


def _host_findings(tmp_path) -> str:
    """A host sysctl fix that is already set: --persist writes the file, the host stays."""
    with open("/proc/sys/" + KEY.replace(".", "/")) as f:
        now = f.read().strip()
    fix = Fix("sysctl", "", True, {"key": KEY, "value": now, "netns": "host"})
    finding = Finding("keepalive-off", "warning", "client vanished", "t", Subject("host"),
                      [], [fix], "why")
    path = tmp_path / "doctor.json"
    path.write_text(json.dumps({"schema": "halfopen.doctor/1", "findings": [finding.to_dict()]}))
    return str(path)


@pytest.fixture
def persist_env(tmp_path, monkeypatch) -> dict:
    env = {"HALFOPEN_JOURNAL": str(tmp_path / "state" / "journal.jsonl"),
           "HALFOPEN_SYSCTL_FILE": str(tmp_path / "sysctl.d" / "60-halfopen.conf")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    os.makedirs(tmp_path / "sysctl.d")
    return env


def test_persist_refuses_a_symlink_before_any_change(persist_env, victim, tmp_path):
    target = persist_env["HALFOPEN_SYSCTL_FILE"]
    os.symlink(victim, target)
    proc = run_halfopen("fix", "--findings", _host_findings(tmp_path), "--apply", "--persist")
    assert proc.returncode == 64
    assert "symlink" in one_line(proc.stderr)
    assert not os.path.exists(persist_env["HALFOPEN_JOURNAL"])  # stopped before the journal


def test_persist_refuses_a_symlink_at_the_backup(persist_env, victim, tmp_path):
    target = persist_env["HALFOPEN_SYSCTL_FILE"]
    with open(target, "w") as f:
        f.write("net.core.somaxconn = 4096\n")
    os.symlink(victim, target + ".bak")  # the old code's shutil.copy2 wrote through it
    proc = run_halfopen("fix", "--findings", _host_findings(tmp_path), "--apply", "--persist")
    assert proc.returncode == 64 and "symlink" in one_line(proc.stderr)
    assert Path(target).read_text() == "net.core.somaxconn = 4096\n"


def test_persist_ignores_the_old_temp_name_and_backs_up_safely(persist_env, victim, tmp_path,
                                                               capsys):
    target = persist_env["HALFOPEN_SYSCTL_FILE"]
    with open(target, "w") as f:
        f.write("net.core.somaxconn = 4096\n")
    planted = f"{target}.tmp.{os.getpid()}"
    os.symlink(victim, planted)
    assert main(["fix", "--findings", _host_findings(tmp_path), "--apply", "--persist"]) == 0
    assert f"{KEY} = " in Path(target).read_text()
    assert Path(target + ".bak").read_text() == "net.core.somaxconn = 4096\n"
    assert not os.path.islink(target) and not os.path.islink(target + ".bak")
    assert os.path.islink(planted)
    assert main(["fix", "--rollback"]) == 0  # puts the previous file back, the same way
    assert Path(target).read_text() == "net.core.somaxconn = 4096\n"


def test_save_snapshot_refuses_a_symlink(victim, tmp_path, netns):
    out = tmp_path / "snap.json"
    out.symlink_to(victim)
    proc = run_halfopen("doctor", "--window", "0", "--netns", netns, "--save-snapshot", str(out))
    assert proc.returncode == 64
    assert "symlink" in proc.stderr and "Traceback" not in proc.stderr
    assert out.is_symlink()


@pytest.mark.parametrize("where", ["", "-wal"])
def test_watch_record_refuses_a_symlink(victim, tmp_path, where):
    db = tmp_path / "h.db"
    os.symlink(victim, str(db) + where)
    proc = run_halfopen("watch", "--once", "--no-doctor", "--record", str(db))
    assert proc.returncode == 64, proc.stderr
    assert "symlink" in one_line(proc.stderr)


def test_watch_record_creates_a_private_file(tmp_path):
    db = tmp_path / "new" / "h.db"
    proc = run_halfopen("watch", "--once", "--no-doctor", "--record", str(db))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db.parent).st_mode) == 0o700


def _ns_findings(tmp_path, ns: str) -> str:
    fix = Fix("sysctl", "", True, {"key": KEY, "value": "300", "netns": ns})
    finding = Finding("keepalive-off", "warning", "client vanished", "t", Subject(ns),
                      [], [fix], "why")
    path = tmp_path / "doctor.json"
    path.write_text(json.dumps({"schema": "halfopen.doctor/1", "findings": [finding.to_dict()]}))
    return str(path)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_journal_refuses_a_planted_link_and_changes_nothing(victim, tmp_path, netns, link):
    journal = tmp_path / "journal.jsonl"
    (os.symlink if link == "symlink" else os.link)(victim, journal)
    proc = run_halfopen("fix", "--findings", _ns_findings(tmp_path, netns), "--apply",
                        "--journal", str(journal))
    assert proc.returncode == 64
    assert ("symlink" if link == "symlink" else "hard links") in one_line(proc.stderr)
    assert ns_sysctl(netns, KEY) == "7200"


def test_journal_is_private(tmp_path, netns):
    journal = tmp_path / "var" / "journal.jsonl"
    proc = run_halfopen("fix", "--findings", _ns_findings(tmp_path, netns), "--apply",
                        "--journal", str(journal))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(journal.parent).st_mode) == 0o700
    assert ns_sysctl(netns, KEY) == "300"


def test_rollback_refuses_a_symlink_planted_since(persist_env, victim, tmp_path, capsys):
    target = persist_env["HALFOPEN_SYSCTL_FILE"]
    with open(target, "w") as f:
        f.write("net.core.somaxconn = 4096\n")
    assert main(["fix", "--findings", _host_findings(tmp_path), "--apply", "--persist"]) == 0
    written = Path(target).read_text()
    os.unlink(target)
    os.symlink(victim, target)  # planted after the apply: rollback must not write through it
    capsys.readouterr()
    assert main(["fix", "--rollback"]) == 2
    out = capsys.readouterr()
    assert "symlink" in out.out and "could not be restored" in one_line(out.err)
    os.unlink(target)  # the symlink gone, a later rollback still has the change pending
    Path(target).write_text(written)
    assert main(["fix", "--rollback"]) == 0
    assert Path(target).read_text() == "net.core.somaxconn = 4096\n"
