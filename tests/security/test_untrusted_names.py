"""Process names a local user chooses reach root's terminal escaped, never obeyed (issue 20).

The attacks: a process named `\\x1b[2J\\x1b]0;PWN\\x07` blanked and retitled
root's terminal through `sockets -p`, `--summary`, `doctor -v` and `watch`;
`a\\nb` split a table row; `[/]` made `watch --once` and `watch --record`
exit 3 with rich's MarkupError; `$(sh /tmp/a)` near its fd limit got
`systemctl edit $(sh /tmp/a).service` from the doctor and a drop-in path from
`fix`. Here a real unprivileged user (the `attacker` fixture) runs one process
per hostile name (prctl PR_SET_NAME), each holding a listener, a CLOSE_WAIT
and an ESTABLISHED socket and near its RLIMIT_NOFILE, and root's halfopen
lists, diagnoses, watches, records and plans fixes for them.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from tests.security.conftest import run_halfopen
from tests.security.hostile import Attacker

from halfopen.collect.unit import read_system_unit
from halfopen.diagnose.common import systemd_limit_fix
from halfopen.model.text import shown

# what each process calls itself (at most 15 bytes: TASK_COMM_LEN)
NAMES = [
    b"\x1b[2J\x1b]0;PWN\x07",  # clear the screen, set the window title, bell
    b"a\nb",  # a newline: a second table row
    b"[/]",  # rich: closing tag with nothing open -> MarkupError
    b"[bold red]x",  # rich: restyle what follows
    b"$(sh /tmp/a)",  # a shell command substitution, in a suggested command
    "\u202eevil".encode(),  # a bidi override: the text after it reads right to left
    b"\xff\xfebad",  # not UTF-8
]
NOFILE = 64  # each holder fills its fd table to NOFILE - 2: the doctor's fd-exhaustion
RAW = ("\x1b", "\x07", "\u202e", "\x9b")  # what must never reach the terminal as is
EXITS = {0, 1, 2, 3}


def kernel_name(raw: bytes) -> str:
    """The comm as /proc/PID/comm reads back through halfopen (invalid bytes as U+FFFD)."""
    return raw[:15].decode("utf-8", "replace")


@pytest.fixture(scope="module")
def holders(attacker: Attacker) -> Iterator[dict[str, int]]:
    """All hostile names at once, each a process of the attacker: {comm: pid}."""
    with ExitStack() as stack:
        pids = {}
        for raw in NAMES:
            proc, _port = stack.enter_context(attacker.holder(raw, nofile_soft=NOFILE))
            with open(f"/proc/{proc.pid}/comm", "rb") as f:
                assert f.read().rstrip(b"\n") == raw[:15], "prctl did not name the process"
            pids[kernel_name(raw)] = proc.pid
        yield pids


def check_clean(proc, what: str) -> str:
    """Exit 0..3, no traceback, no raw control or bidi character; returns stdout."""
    assert proc.returncode in EXITS, f"{what}: exit {proc.returncode}: {proc.stderr[-2000:]}"
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream and "MarkupError" not in stream, f"{what}: {stream[-2000:]}"
        for ch in RAW:
            assert ch not in stream, f"{what}: raw {ch!r} reached the terminal"
    return proc.stdout


def test_sockets_table_shows_each_name_escaped_one_row_each(holders, attacker):
    out = check_clean(run_halfopen("sockets", "-p", "uid", str(attacker.uid)), "sockets -p")
    lines = out.splitlines()
    assert lines[0].startswith("State")
    for line in lines[1:]:  # a newline in a name would start a row with its second half
        assert line.split()[0] in {"LISTEN", "ESTAB", "CLOSE-WAIT", "FIN-WAIT-2"}, line
    for comm, pid in holders.items():
        assert f"{shown(comm)}({pid},fd=" in out, (comm, out)
    assert "a\\nb(" in out and "\\x1b[2J\\x1b]0;PWN\\x07(" in out and "\\u202eevil(" in out


def test_sockets_summary_shows_each_name_escaped(holders, attacker):
    out = check_clean(run_halfopen("sockets", "-p", "--summary", "uid", str(attacker.uid)),
                      "sockets --summary")
    for comm, pid in holders.items():
        assert f"{shown(comm)}({pid})" in out, (comm, out)


def test_json_keeps_the_exact_names(holders, attacker):
    proc = run_halfopen("sockets", "-p", "--json", "uid", str(attacker.uid))
    assert proc.returncode == 0, proc.stderr
    seen = {o["comm"]: o["pid"] for s in json.loads(proc.stdout)["sockets"] for o in s.get("owners", [])}
    for comm, pid in holders.items():
        assert seen.get(comm) == pid, (comm, seen)


def test_kill_dry_run_shows_names_escaped(holders, attacker):
    out = check_clean(run_halfopen("kill", "state", "close-wait", "uid", str(attacker.uid)), "kill (dry run)")
    assert "dry run:" in out
    for comm in holders:
        assert f"{shown(comm)}(" in out


@pytest.fixture(scope="module")
def doctor_json(holders, tmp_path_factory) -> str:
    """`doctor --json` with the holders near their fd limit; the findings file for `fix`."""
    proc = run_halfopen("doctor", "--json", "--window", "0.2")
    assert proc.returncode in EXITS and "Traceback" not in proc.stderr, proc.stderr
    path = tmp_path_factory.mktemp("names") / "findings.json"
    path.write_text(proc.stdout)
    return str(path)


def fd_findings(doctor_json: str, holders: dict[str, int]) -> list[dict]:
    with open(doctor_json) as f:
        report = json.load(f)
    ours = set(holders.values())
    return [f for f in report["findings"]
            if f["id"] == "fd-exhaustion" and f["subject"].get("pid") in ours]


def test_doctor_json_names_each_holder_exactly_with_no_command_from_its_name(doctor_json, holders):
    found = fd_findings(doctor_json, holders)
    assert {f["subject"]["pid"] for f in found} == set(holders.values()), found
    for f in found:
        comm = f["subject"]["comm"]
        assert holders[comm] == f["subject"]["pid"]  # the exact name, as the kernel has it
        for fx in f["fixes"]:
            assert comm not in fx["command"], fx  # no command, path or unit built from it
            assert comm not in json.dumps(fx["params"]), fx
        systemd = [fx for fx in f["fixes"] if fx["action"] == "config"]
        assert systemd and "systemctl edit" not in systemd[0]["command"], systemd  # no unit: words


def test_doctor_verbose_text_shows_names_escaped(holders):
    out = check_clean(run_halfopen("doctor", "-v", "--window", "0.2"), "doctor -v")
    for comm, pid in holders.items():
        assert f"{shown(comm)} (pid {pid}) uses " in out, (comm, out[-3000:])
        assert f"comm {shown(comm)}" in out  # the -v subject line
    fix_lines = [x for x in out.splitlines() if x.lstrip().startswith("fix [")]
    assert fix_lines
    for line in fix_lines:
        assert "$(sh /tmp/a)" not in line and "systemctl edit $(" not in line, line


def test_doctor_plugin_lines_show_names_escaped(holders):
    check_clean(run_halfopen("doctor", "--nagios", "-v", "--window", "0.2"), "doctor --nagios")


def test_fix_plan_from_the_doctor_findings_suggests_no_command_from_a_name(doctor_json, holders):
    out = check_clean(run_halfopen("fix", "fd-exhaustion", "--findings", doctor_json), "fix (plan)")
    assert "nothing was changed" in out or "by hand" in out, out
    for comm, pid in holders.items():
        # the lasting fix in words: the holders run in no system service
        assert f"if pid {pid} runs under a service manager, set LimitNOFILE=" in out, out[-3000:]
        step = re.search(rf"pid {pid} \((.*)\) RLIMIT_NOFILE", out)
        if step:  # a prlimit step: planned when prlimit(2) may read the limits
            assert step.group(1) == shown(comm), (comm, step.group(0))
    by_hand = out.split("by hand", 1)[1] if "by hand" in out else ""
    assert "LimitNOFILE=" in by_hand
    for line in by_hand.splitlines():
        assert "$(sh /tmp/a)" not in line, line  # escaped or quoted, never a bare word
        assert "/etc/systemd/system/$(" not in line and "systemctl edit $(" not in line


def _watch_check(proc, holders: dict[str, int], what: str) -> None:
    out = check_clean(proc, what)
    assert proc.returncode == 0, f"{what}: {proc.stderr[-2000:]}"
    for comm in holders:
        assert shown(comm) in out, (what, comm)


def test_watch_once_draws_names_as_text(holders):
    _watch_check(run_halfopen("watch", "--once", "--top", "1000"), holders, "watch --once")


def test_watch_record_keeps_recording_and_the_exact_names(holders, tmp_path):
    db = tmp_path / "history.db"
    proc = run_halfopen("watch", "--once", "--top", "1000", "--record", str(db))
    _watch_check(proc, holders, "watch --record --once")
    with sqlite3.connect(db) as con:
        text = "\n".join(str(v) for table, in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")
            for row in con.execute(f"SELECT * FROM {table}") for v in row)
    for comm in holders:
        if "\ufffd" not in comm:
            assert comm in text, comm  # the history keeps the name as it was


# ---------------------------------------------------------------- pure parts

@pytest.mark.parametrize("text, want", [
    ("", ""),
    ("nginx", "nginx"),
    ("\x00\x1f\x7f", "\\x00\\x1f\\x7f"),
    ("\x85\x9b[31m", "\\x85\\x9b[31m"),  # C1: NEL and the 8-bit CSI some terminals obey
    ("tab\there", "tab\\there"),
    ("\\x1b", "\\\\x1b"),  # typed backslashes are doubled: told apart from an escape
    ("\u2066x\u2069\u200e\u061c", "\\u2066x\\u2069\\u200e\\u061c"),
    ("\U000e0061", "\\U000e0061"),  # a tag character: invisible text
    ("\ud800", "\\ud800"),  # a lone surrogate that is not an escaped byte
    ("日本 ü", "日本 ü"),  # printable non-ASCII and the space are kept
])
def test_shown_edge_cases(text, want):
    assert shown(text) == want
    assert shown(text).isprintable()


def test_shown_is_idempotent_on_its_own_output_only_when_plain():
    once = shown("a\nb")
    assert shown(once) == "a\\\\nb"  # shown twice is visible, never silently equal


def test_a_unit_is_quoted_and_never_made_from_a_name():
    fx = systemd_limit_fix(4321, "", 4096)
    assert fx.params == {} and "systemctl" not in fx.command.split("`")[0]
    fx = systemd_limit_fix(4321, "getty@tty1.service", 4096)
    assert fx.command.startswith("systemctl edit getty@tty1.service ")
    fx = systemd_limit_fix(4321, "a\\x2db.service", 4096)  # systemd's own escape, quoted
    assert fx.command.startswith("systemctl edit 'a\\x2db.service' ")
    assert re.search(r"/etc/systemd/system/a\\x2db\.service\.d/", fx.params["file"])


def test_read_system_unit_reads_the_kernel(tmp_path):
    """A recorded /proc: a cgroup a service or a user made is not a unit root may edit."""
    pid_dir = tmp_path / "4321"
    pid_dir.mkdir()
    cgroup = pid_dir / "cgroup"
    cgroup.write_text("0::/system.slice/app.service/$(sh /tmp/a).service\n")
    assert read_system_unit(4321, str(tmp_path)) == "app.service"  # the one systemd made
    cgroup.write_text("0::/system.slice/$(sh /tmp/a).service\n")
    assert read_system_unit(4321, str(tmp_path)) == ""  # not a name systemd accepts
    cgroup.write_text("0::/user.slice/user-1000.slice/user@1000.service/x.service\n")
    assert read_system_unit(4321, str(tmp_path)) == ""  # a user's service: not root's to edit
    assert read_system_unit(999_999, str(tmp_path)) == ""  # gone
