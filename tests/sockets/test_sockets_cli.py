"""`halfopen sockets` as a user runs it: version, help, every output format, bad
input (exit 64, one line, no traceback), owner filters, and running as nobody."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections import Counter

import click
import pytest
from sockets_support import LOCAL4, Puppet
from tests.helpers import halfopen_json, run_halfopen

from halfopen import __version__
from halfopen.cli.sockets_out import CSV_COLUMNS, CSV_INFO_COLUMNS

SYSTEM_PYTHON = "/usr/bin/python3"


def test_version():
    proc = run_halfopen("--version", check=True)
    assert proc.stdout.strip() == f"halfopen, version {__version__}"


def test_help_lists_sockets_and_exit_codes():
    out = run_halfopen("--help", check=True).stdout
    assert "sockets" in out and "64 usage error" in out
    sub = run_halfopen("sockets", "--help", check=True).stdout
    for word in ("--json", "--jsonl", "--csv", "--summary", "--netns", "--all-netns",
                 "--source", "close-wait", "synchronized", "dport"):
        assert word in sub, word


def test_json(zoo):
    doc = halfopen_json("sockets", "-p", "-i", "--netns", zoo.netns)
    assert doc["schema"] == "halfopen.sockets/1" and doc["notes"] == []
    assert len(doc["sockets"]) == len(zoo.expected)


def test_jsonl_streams_one_object_per_line(zoo):
    out = run_halfopen("sockets", "-p", "--netns", zoo.netns, "--jsonl", check=True).stdout
    lines = out.splitlines()
    assert len(lines) == len(zoo.expected)
    objs = [json.loads(line) for line in lines]
    assert {(o["local_addr"], o["local_port"], o["peer_addr"], o["peer_port"])
            for o in objs} == {e.key for e in zoo.expected}


@pytest.mark.parametrize("info", [False, True])
def test_csv(zoo, info):
    args = ["sockets", "-p", "--netns", zoo.netns, "--csv"] + (["-i"] if info else [])
    rows = list(csv.reader(io.StringIO(run_halfopen(*args, check=True).stdout)))
    assert rows[0] == CSV_COLUMNS + (CSV_INFO_COLUMNS if info else [])
    body = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert len(body) == len(zoo.expected)
    srv = [r for r in body if r["comms"] == "ho-srv"]
    assert srv and all(r["pids"] == str(zoo.srv.pid) for r in srv)
    if info:
        est = [r for r in body if r["state"] == "established" and r["inode"] != "0"]
        assert est and all(r["rto"].isdigit() and r["snd_cwnd"].isdigit() for r in est)


def test_summary_json_and_text(zoo):
    summ = halfopen_json("sockets", "--netns", zoo.netns, "--summary")
    assert summ["schema"] == "halfopen.summary/1"
    assert summ["total"] == len(zoo.expected)
    assert summ["by_state"] == dict(Counter(e.state for e in zoo.expected))
    procs = {(p["comm"], p["state"]): p["count"] for p in summ["by_process"]}
    want = Counter((e.owner, e.state) for e in zoo.expected if e.owner)
    assert procs == dict(want)
    text = run_halfopen("sockets", "--netns", zoo.netns, "--summary", check=True).stdout
    assert text.startswith(f"Total: {len(zoo.expected)} TCP sockets")
    assert "Top processes" in text and "ho-srv" in text


def test_table_like_ss(zoo):
    lines = run_halfopen("sockets", "-p", "-i", "--netns", zoo.netns, check=True).stdout.splitlines()
    assert lines[0].split()[:3] == ["State", "Recv-Q", "Send-Q"]
    assert len(lines) == 1 + len(zoo.expected)
    states = Counter(line.split()[0] for line in lines[1:])
    assert states["CLOSE-WAIT"] == 2 and states["SYN-SENT"] == 2 and states["SYN-RECV"] == 2
    cw = [line for line in lines if line.startswith("CLOSE-WAIT")]
    assert all(f"ho-srv({zoo.srv.pid},fd=" in line for line in cw)


def test_a_port_past_65535_is_read_as_ss_reads_it_with_a_note():
    """sport <= :70000: ss's matcher compares 70000, the kernel its low 16 bits (4464)."""
    proc = run_halfopen("sockets", "--json", "sport", "<=", ":70000")
    assert proc.returncode == 0, proc.stderr
    note = [line for line in proc.stderr.splitlines() if "70000" in line]
    assert len(note) == 1 and "4464" in note[0] and note[0].startswith("halfopen: note: ")
    assert all(s["local_port"] <= 4464 for s in json.loads(proc.stdout)["sockets"])


@pytest.mark.parametrize("args,names", [
    (["sockets", "state", "bogus"], ["'bogus'", "close-wait"]),
    (["sockets", "frobnicate"], ["'frobnicate'", "sport"]),
    (["sockets", "sport", "=", ":2147483648"], ["':2147483648'"]),  # past a C int, as ss
    (["sockets", "sport = :22 or sport ="], ["`sport =`", ":22"]),  # issue 20: ss's syntax error
    (["sockets", "dport", ">="], ["`dport >=`", "port"]),
    (["sockets", "src", "or", "sport", "=", ":1"], ["`src`", "'or'", "address"]),
    (["sockets", "src", "1.2.3.999"], ["1.2.3.999"]),
    (["sockets", "(", "sport", "=", ":1"], ["')'"]),
    (["sockets", "--json", "--csv"], ["--json", "--csv"]),
    (["sockets", "--source", "carrier-pigeon"], ["carrier-pigeon"]),
    (["sockets", "--netns-pid", "abc"], ["abc"]),
    (["sockets", "--no-such-option"], ["--no-such-option"]),
    (["no-such-command"], ["no-such-command"]),
    (["sockets", "pid", "x"], ["'x'"]),
])
def test_bad_input_exits_64_with_one_line(args, names):
    proc = run_halfopen(*args)
    assert proc.returncode == 64, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("halfopen: ")
    for name in names:
        assert name in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def _owned(doc: dict) -> dict[tuple, set]:
    return {(d["local_addr"], d["local_port"], d["peer_addr"], d["peer_port"]):
            {o["comm"] for o in d.get("owners", [])} for d in doc["sockets"]}


def test_pid_filter_selects_owner_sockets(zoo):
    doc = halfopen_json("sockets", "--netns", zoo.netns, "pid", str(zoo.srv.pid))
    got = _owned(doc)
    assert set(got) == {e.key for e in zoo.expected if e.owner == "ho-srv"}
    # owners were scanned for the filter, so they are shown too
    assert all(v == {"ho-srv"} for v in got.values())


def test_comm_filter_with_state_and_not(zoo):
    doc = halfopen_json("sockets", "-p", "--netns", zoo.netns, "comm", "ho-cli", "and",
                        "not", "state", "established")
    assert set(_owned(doc)) == {e.key for e in zoo.expected
                                if e.owner == "ho-cli" and e.state != "established"}
    doc = halfopen_json("sockets", "-p", "--netns", zoo.netns, "comm", "ho-srv", "or",
                        "comm", "ho-cli")
    assert set(_owned(doc)) == {e.key for e in zoo.expected if e.owner}
    doc = halfopen_json("sockets", "--netns", zoo.netns, "comm", "nosuchcomm")
    assert doc["sockets"] == []


def test_uid_filter(zoo):
    doc = halfopen_json("sockets", "--netns", zoo.netns, "uid", "0", "and", "not",
                        "state", "bucket")
    assert len(doc["sockets"]) == sum(e.state not in ("time_wait", "syn_recv")
                                      for e in zoo.expected)


# --------------------------------------------------------------- not root

@pytest.fixture
def nobody_python():
    """The system python, with click and halfopen on a path `nobody` may read.

    The test interpreter lives under /root, which nobody cannot enter."""
    if not os.path.exists(SYSTEM_PYTHON) or shutil.which("setpriv") is None:
        pytest.skip("needs /usr/bin/python3 and setpriv")
    lib = tempfile.mkdtemp(prefix="halfopen-nobody-")
    try:
        os.chmod(lib, 0o755)
        shutil.copytree(os.path.dirname(click.__file__), os.path.join(lib, "click"))
        src = os.path.dirname(os.path.dirname(os.path.abspath(__import__("halfopen").__file__)))
        shutil.copytree(os.path.join(src, "halfopen"), os.path.join(lib, "halfopen"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(lib):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755)
        yield lib
    finally:
        shutil.rmtree(lib, ignore_errors=True)


NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")


def test_not_root_still_lists_sockets_and_notes_once(zoo, nobody_python):
    env = {"PYTHONPATH": nobody_python, "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    # a socket owned by nobody: its owner stays visible to nobody
    mine = Puppet("ho-nobody", zoo.netns, wrap=NOBODY, python=SYSTEM_PYTHON)
    try:
        (_fd, port) = mine.ints("listen", LOCAL4)
        proc = run_halfopen("sockets", "-p", "--json", netns=zoo.netns, prefix=NOBODY,
                            python=SYSTEM_PYTHON, env=env)
    finally:
        mine.stop()
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by_key = {(d["local_addr"], d["local_port"], d["peer_addr"], d["peer_port"]): d
              for d in doc["sockets"]}
    assert {e.key for e in zoo.expected} <= set(by_key)
    # root's puppets' fds are hidden from nobody; nobody's own are not
    assert all("owners" not in by_key[e.key] for e in zoo.expected)
    ours = by_key[(LOCAL4, port, "0.0.0.0", 0)]
    assert ours["uid"] == 65534
    assert [(o["comm"], o["pid"]) for o in ours["owners"]] == [("ho-nobody", mine.pid)]
    notes = [line for line in proc.stderr.splitlines() if line]
    assert len(notes) == 1 and "not root" in notes[0] and "owners" in notes[0], notes
    assert doc["notes"] == [notes[0].removeprefix("halfopen: note: ")]
