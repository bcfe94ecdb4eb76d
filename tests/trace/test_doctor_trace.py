"""`halfopen doctor --trace` on real servers, real connections and real tracefs: the
trace window's FINs and close() calls on the close-wait-leak finding, compared with
what each test did; without permission, one note and the rest as before."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from tests.helpers import AS_NOBODY, nobody_cannot_run_halfopen, run_halfopen, start_halfopen
from tests.trace.trace_support import leftover, server, stop_server

TRACE_S = 7.0
LOOKUP_S = 2.5  # connections live this long before they end, so an owner lookup sees them


def _doctor_during(mode: str, n: int, tracefs_restored) -> tuple[subprocess.Popen, dict, str]:
    """A server of `mode` (peers.py); `doctor --trace` started, then n clients connect
    and close while it traces. Returns the server, the doctor's JSON and its stderr."""
    srv, port = server(n, mode)
    d = None
    try:
        d = start_halfopen("doctor", "--trace", str(TRACE_S), "--window", "0", "--min-age", "1",
                           "--json", "--pid", str(srv.pid), "--port", str(port),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tracefs_restored.append(d.pid)
        deadline = time.monotonic() + 30
        while not leftover([d.pid]):  # its instance exists: the trace has begun
            assert d.poll() is None and time.monotonic() < deadline, d.communicate()
            time.sleep(0.05)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        time.sleep(LOOKUP_S)
        for c in clients:
            c.close()
        out, err = d.communicate(timeout=120)
    finally:
        if d is not None and d.poll() is None:
            d.kill()
            d.communicate(timeout=30)
        stop_server(srv)
    assert leftover([d.pid]) == []
    assert out, err
    return srv, json.loads(out), err


def _owner(doc: dict, pid: int) -> dict:
    rows = [o for o in doc["trace"]["owners"] if o["pid"] == pid]
    assert len(rows) == 1, json.dumps(doc["trace"])
    return rows[0]


def _evidence(finding: dict) -> dict:
    return {e["what"]: e["value"] for e in finding["evidence"]}


def test_doctor_trace_leaker_closed_none(tracefs_restored):
    n = 4
    srv, doc, err = _doctor_during("leak", n, tracefs_restored)
    assert doc["trace"]["traced"] is True and doc["trace"]["lost_events"] == 0, doc["trace"]
    row = _owner(doc, srv.pid)
    assert (row["fins_received"], row["closes_called"], row["still_in_close_wait"]) == (n, 0, n)
    leak = [f for f in doc["findings"] if f["id"] == "close-wait-leak" and f["subject"].get("pid") == srv.pid]
    assert len(leak) == 1, doc["findings"]
    f = leak[0]
    assert f["severity"] == "warning"  # exact ages past --min-age 1, and no close() at all
    assert f"received FIN on {n} connections in the window, called close() on 0" in f["title"]
    got = _evidence(f)
    assert (got["fins_received"], got["closes_called"]) == (n, 0)
    ages = got["close_wait_exact_ages_s"]
    # the FINs came LOOKUP_S into the trace, which ran TRACE_S
    assert len(ages) == n and all(1.0 <= a <= TRACE_S + 30 for a in ages), ages


def test_doctor_trace_healthy_server_closed_all(tracefs_restored):
    n = 4
    srv, doc, err = _doctor_during("close", n, tracefs_restored)
    row = _owner(doc, srv.pid)
    assert (row["fins_received"], row["closes_called"], row["still_in_close_wait"]) == (n, n, 0)
    assert not [f for f in doc["findings"] if f["id"] == "close-wait-leak"
                and f["subject"].get("pid") == srv.pid], doc["findings"]


def test_doctor_trace_without_permission_is_one_note(tracefs_restored):
    """As nobody tracefs cannot be opened: one note, and the doctor runs as without --trace."""
    unreachable = nobody_cannot_run_halfopen()
    if unreachable:
        pytest.skip(unreachable)
    with_trace = run_halfopen("doctor", "--trace", "0.5", "--window", "0", prefix=AS_NOBODY,
                              timeout=120, cwd="/")
    assert with_trace.returncode in (0, 1, 2), with_trace.stderr
    notes = [line for line in with_trace.stdout.splitlines() if "--trace: not traced" in line]
    assert len(notes) == 1 and "tracefs needs root" in notes[0], with_trace.stdout
    as_json = run_halfopen("doctor", "--trace", "0.5", "--window", "0", "--json", prefix=AS_NOBODY,
                           timeout=120, cwd="/")
    doc = json.loads(as_json.stdout)
    assert doc["trace"]["traced"] is False and doc["trace"]["owners"] == []
    assert doc["checked"], doc  # the rules ran


def test_doctor_trace_bad_input_and_snapshot():
    bad = run_halfopen("doctor", "--trace", "-1", timeout=60)
    assert bad.returncode == 64 and bad.stderr.count("\n") == 1, bad.stderr
    if os.geteuid() == 0:
        snap = run_halfopen("doctor", "--trace", "1", "--snapshot", sys.executable, timeout=60)
        assert snap.returncode == 64 and "--trace" in snap.stderr, snap.stderr
