"""Files a local user plants where root reads or writes (issue 20, items 3 and 6).

The attacker is a real unprivileged user (the `attacker` fixture); what it
plants it plants itself, in a directory it can write: a copy of a setuid
binary at root's `--sysctl-file`, a hard link to a root-owned setuid file, a
FIFO at each path root opens, a symlink in a sticky world-writable directory.
Root then runs the real CLI as a subprocess with a timeout: a hang fails the
test instead of hanging the suite. A findings file without `start_time` and a
root-only secret file named by mistake complete the list.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.security.conftest import one_line, run_halfopen

from halfopen.kernel import current_identity
from halfopen.model.finding import Finding, Fix
from halfopen.model.subject import Subject

KEY = "net.ipv4.tcp_keepalive_time"
CASES = Path(__file__).parent.parent / "doctor" / "cases"
HANG_S = 30  # a FIFO open blocks forever; a refusal takes well under a second


def _as(attacker, *argv: str) -> None:
    """Run argv as the attacker; it must succeed."""
    p = attacker.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, (argv, out, err)


@pytest.fixture
def lair(attacker, tmp_path) -> Iterator[str]:
    """A fresh directory the attacker made and owns (its sysctl.d, its /var/lib ...)."""
    path = os.path.join(attacker.home, f"lair-{tmp_path.name}")
    _as(attacker, "mkdir", "-m", "0755", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _host_findings(tmp_path) -> str:
    """A host sysctl fix already in place: --persist writes its file, the host stays as is."""
    with open("/proc/sys/" + KEY.replace(".", "/")) as f:
        now = f.read().strip()
    fix = Fix("sysctl", "", True, {"key": KEY, "value": now, "netns": "host"})
    finding = Finding("keepalive-off", "warning", "c", "t", Subject("host"), [], [fix], "why")
    path = tmp_path / "doctor.json"
    path.write_text(json.dumps({"schema": "halfopen.doctor/1", "findings": [finding.to_dict()]}))
    return str(path)


def _snapshot(tmp_path) -> str:
    path = tmp_path / "snap.json"
    case = json.loads((CASES / "close-wait-few-but-old.json").read_text())
    path.write_text(json.dumps(case["snapshot"]))
    return str(path)


def _journal_lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def _is_root_setuid(path: str) -> bool:
    st = os.stat(path)
    return st.st_uid == 0 and bool(st.st_mode & (stat.S_ISUID | stat.S_ISGID))


# ------------------------------------------------------------ fix --persist and its backup

def _persist(tmp_path, target: str) -> subprocess.CompletedProcess:
    return run_halfopen("fix", "--findings", _host_findings(tmp_path), "--apply", "--persist",
                        "--sysctl-file", target, "--journal", str(tmp_path / "j" / "journal.jsonl"))


def test_persist_refuses_a_users_setuid_copy_and_makes_no_root_setuid_backup(
        attacker, lair, tmp_path):
    """The local root of issue 20: a user's `cp /usr/bin/id; chmod 4755` at root's
    --sysctl-file came back as `-rwsr-xr-x root root 60-halfopen.conf.bak`."""
    target = os.path.join(lair, "60-halfopen.conf")
    _as(attacker, "cp", "/usr/bin/id", target)
    _as(attacker, "chmod", "4755", target)
    planted = Path(target).read_bytes()
    proc = _persist(tmp_path, target)
    assert proc.returncode == 64, proc.stderr
    line = one_line(proc.stderr)
    assert f"owned by uid {attacker.uid}, not by root" in line and target in line
    assert not os.path.lexists(target + ".bak")  # refused before anything was copied
    st = os.stat(target)
    assert (st.st_uid, Path(target).read_bytes()) == (attacker.uid, planted)
    assert _journal_lines(str(tmp_path / "j" / "journal.jsonl")) == []


@contextmanager
def _protected_hardlinks_off() -> Iterator[None]:
    """fs.protected_hardlinks=0 (as on many hosts) for the link, then as it was."""
    knob = Path("/proc/sys/fs/protected_hardlinks")
    before = knob.read_text().strip()
    knob.write_text("0")
    try:
        yield
    finally:
        knob.write_text(before)
    assert knob.read_text().strip() == before


def test_persist_refuses_a_hard_link_to_a_root_setuid_file(attacker, lair, tmp_path):
    """A root-owned setuid file linked in by the user: root's, but not one link."""
    shelf = os.path.join(attacker.home, f"shelf-{tmp_path.name}")
    os.mkdir(shelf, 0o755)  # root's directory, on the attacker's filesystem
    try:
        suid = os.path.join(shelf, "id")
        shutil.copy("/usr/bin/id", suid)
        os.chmod(suid, 0o4755)
        target = os.path.join(lair, "60-halfopen.conf")
        with _protected_hardlinks_off():
            _as(attacker, "ln", suid, target)
        assert os.stat(target).st_nlink == 2 and _is_root_setuid(target)
        proc = _persist(tmp_path, target)
        assert proc.returncode == 64, proc.stderr
        assert "it has 2 hard links" in one_line(proc.stderr)
        assert not os.path.lexists(target + ".bak")
        assert os.stat(suid).st_mode & stat.S_ISUID and os.stat(suid).st_nlink == 2
    finally:
        shutil.rmtree(shelf, ignore_errors=True)


def test_persist_backup_is_0644_root_whatever_the_old_mode(tmp_path):
    """root's own file with an odd mode (4755 here): the .bak takes a fixed mode."""
    d = tmp_path / "sysctl.d"
    d.mkdir()
    target = d / "60-halfopen.conf"
    target.write_text("net.core.somaxconn = 4096\n")
    os.chmod(target, 0o4755)
    proc = _persist(tmp_path, str(target))
    assert proc.returncode == 0, proc.stderr
    bak = os.stat(str(target) + ".bak")
    assert (bak.st_uid, stat.S_IMODE(bak.st_mode)) == (0, 0o644)
    assert Path(str(target) + ".bak").read_text() == "net.core.somaxconn = 4096\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644 and KEY in target.read_text()


# ------------------------------------------------------------ FIFOs everywhere root opens

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (name, argv with FIFO where the planted FIFO goes); F and S are a findings and a snapshot file
FIFO_RUNS = [
    ("journal, fix --apply", ["fix", "--findings", "F", "--apply", "--journal", "FIFO"]),
    ("journal, fix --rollback", ["fix", "--rollback", "--journal", "FIFO"]),
    ("sysctl file, fix --persist", ["fix", "--findings", "F", "--apply", "--persist",
                                    "--sysctl-file", "FIFO", "--journal", "J"]),
    ("watch --record", ["watch", "--once", "--no-doctor", "--record", "FIFO"]),
    ("doctor --history", ["doctor", "--snapshot", "S", "--history", "FIFO"]),
    ("report FILE", ["report", "FIFO"]),
    ("doctor --snapshot", ["doctor", "--snapshot", "FIFO"]),
    ("doctor --save-snapshot", ["doctor", "--snapshot", "S", "--save-snapshot", "FIFO"]),
    ("fix --findings", ["fix", "--findings", "FIFO"]),
    ("doctor --middlebox-file", ["doctor", "--snapshot", "S", "--middlebox-file", "FIFO"]),
    ("exporter --web.config.file", ["exporter", "--no-doctor", "--listen", "127.0.0.1:PORT",
                                    "--web.config.file", "FIFO"]),
]


@pytest.mark.parametrize("argv", [a for _n, a in FIFO_RUNS], ids=[n for n, _a in FIFO_RUNS])
def test_a_planted_fifo_is_one_line_not_a_hang(attacker, lair, tmp_path, argv):
    fifo = os.path.join(lair, "planted")
    _as(attacker, "mkfifo", "-m", "0666", fifo)
    words = {"FIFO": fifo, "F": _host_findings(tmp_path), "S": _snapshot(tmp_path),
             "J": str(tmp_path / "journal.jsonl")}
    args = [words.get(a, a).replace("PORT", str(_free_port())) for a in argv]
    started = time.monotonic()
    proc = run_halfopen(*args, timeout=HANG_S)  # TimeoutExpired (the old hang) fails the test
    took = time.monotonic() - started
    assert proc.returncode == 64, (proc.returncode, proc.stderr)
    line = one_line(proc.stderr)
    assert fifo in line and "a FIFO, not a regular file" in line, line
    assert "serving metrics" not in proc.stderr  # the exporter never started without TLS/auth
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left as it was
    assert took < HANG_S / 2, took


# ------------------------------------------------------------ a symlinked journal

@pytest.fixture
def sticky(attacker, tmp_path) -> Iterator[str]:
    """A root-owned world-writable sticky directory, as /tmp is (reachable by the attacker)."""
    path = os.path.join(attacker.home, f"sticky-{tmp_path.name}")
    os.mkdir(path)
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("mode", ["--apply", "--rollback"])
def test_a_symlinked_journal_in_a_sticky_directory_is_exit_64(attacker, sticky, victim,
                                                              tmp_path, mode):
    """The kernel answers EACCES, not ELOOP, to O_CREAT on another user's symlink in a
    sticky world-writable directory (may_create_in_sticky): that came out as exit 2
    'Permission denied' where the docs promise 64 and the word symlink."""
    journal = os.path.join(sticky, "journal.jsonl")
    _as(attacker, "ln", "-s", victim, journal)
    args = ["--findings", _host_findings(tmp_path), "--apply"] if mode == "--apply" \
        else ["--rollback"]
    proc = run_halfopen("fix", *args, "--journal", journal, timeout=HANG_S)
    assert proc.returncode == 64, proc.stderr
    line = one_line(proc.stderr)
    assert "it is a symlink" in line and journal in line, line
    assert os.path.islink(journal)


# ------------------------------------------------------------ identity: no start_time, no action

def _ss_close_wait(port: int) -> int:
    out = subprocess.run(["ss", "-Htn", "state", "close-wait", "sport", "=", f":{port}"],
                         capture_output=True, text=True, check=True).stdout
    return len([x for x in out.splitlines() if x.strip()])


def _fix_for(action: str, pid: int) -> Fix:
    params = {"kill": {"filter": f"state close-wait pid {pid}"},
              "prlimit": {"pid": pid, "resource": "nofile", "soft": 512},
              "keepalive": {"pid": pid, "idle": 30, "interval": 5, "count": 3}}[action]
    return Fix(action, "", True, params)


@pytest.mark.parametrize("action", ["kill", "prlimit", "keepalive"])
def test_a_finding_without_start_time_is_not_acted_on(attacker, tmp_path, action):
    """A pid alone may be any process by now (the kill of issue 20 hit a reused pid):
    no start_time in the subject, no action; with it, the same file acts."""
    with attacker.holder(b"holder") as (holder, port):
        subject = {"pid": holder.pid, "comm": "holder", "netns": "host"}
        journal = str(tmp_path / "journal.jsonl")

        def run(subj: dict) -> dict:
            finding = Finding("close-wait-leak", "warning", "c", "t", Subject.from_dict(subj), [],
                              [_fix_for(action, holder.pid)], "why")
            path = tmp_path / "doctor.json"
            path.write_text(json.dumps({"findings": [finding.to_dict()]}))
            proc = run_halfopen("fix", "--findings", str(path), "--apply", "--json",
                                "--journal", journal)
            assert proc.returncode == 0 and not proc.stderr, proc.stderr
            (result,) = json.loads(proc.stdout)["results"]
            return result

        result = run(subject)
        assert result["outcome"] == "skipped", result
        assert "records no start_time" in result["detail"] and "\n" not in result["detail"]
        assert _journal_lines(journal) == []  # nothing was even about to change
        assert _ss_close_wait(port) == 1
        if action == "kill":  # the control: the doctor's identity makes the same fix act
            now = current_identity.process(holder.pid)
            assert now is not None
            result = run({**subject, "start_time": now.start_time})
            assert result["outcome"] == "set", result
            assert _ss_close_wait(port) == 0


# ------------------------------------------------------------ a secret file named by mistake

SECRET = "hoSECRETsalt"

SECRET_RUNS = [
    ("doctor --middlebox-file", ["doctor", "--snapshot", "S", "--middlebox-file", "X"], "X:1"),
    ("exporter --web.config.file", ["exporter", "--no-doctor", "--listen", "127.0.0.1:PORT",
                                    "--web.config.file", "X"], "X:1"),
    ("fix --rollback --journal", ["fix", "--rollback", "--journal", "X"], "X:1"),
    ("fix --findings", ["fix", "--findings", "X"], "X"),
    ("doctor --snapshot", ["doctor", "--snapshot", "X"], "X"),
]


@pytest.mark.parametrize("argv, where", [(a, w) for _n, a, w in SECRET_RUNS],
                         ids=[n for n, _a, _w in SECRET_RUNS])
def test_a_secret_file_named_by_mistake_is_refused_without_a_byte_of_it(tmp_path, argv, where):
    """A root-only file shaped like /etc/shadow (made here; the real one is not read)."""
    secret = tmp_path / "shadow"
    secret.write_text(f"root:$y$j9T${SECRET}$Qm9ndXNIYXNoVmFsdWU:19700:0:99999:7:::\n"
                      "daemon:*:19700:0:99999:7:::\n")
    os.chmod(secret, 0o600)
    words = {"X": str(secret), "S": _snapshot(tmp_path)}
    args = [words.get(a, a).replace("PORT", str(_free_port())) for a in argv]
    proc = run_halfopen(*args, timeout=HANG_S)
    assert proc.returncode == 64, (proc.returncode, proc.stderr)
    line = one_line(proc.stderr)
    assert where.replace("X", str(secret)) in line, line
    assert SECRET not in proc.stderr + proc.stdout and "root:" not in line, line
