"""The streamed doctor on a real table: 3,000 CLOSE_WAIT connections in a namespace.

A real process accepts 3,000 loopback connections and never closes them; the
clients close, so the server's sockets sit in CLOSE_WAIT. The live doctor
tallies the dump as it streams (no socket list); it must name the process,
count all 3,000, and agree with the doctor run on the same table saved to a
file (the list path, tallied after loading).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from doctor_support import CLIENT, SERVER, doctor, finding

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

COUNT = 3000


def _evidence(f: dict) -> dict:
    return {e["what"]: e["value"] for e in f["evidence"]}


def test_3000_close_wait_named_and_counted(lab, tmp_path):
    server = lab.spawn("leak-server", SERVER, "8080", str(COUNT),
                       prefix=["prlimit", f"--nofile={COUNT + 200}:{COUNT + 200}", "--"])
    lab.spawn("connect", SERVER, "8080", str(COUNT), CLIENT)
    time.sleep(0.5)
    rc, data = doctor("--netns", lab.netns, "--window", "0", "--min-age", "0", timeout=120)
    f = finding(data, "close-wait-leak", pid=server.pid)
    ev = _evidence(f)
    assert f["severity"] == "critical" and rc == 2
    assert f["subject"]["comm"] == "python3" or f["subject"]["comm"].startswith("python")
    assert f["subject"]["port"] == 8080 and f["subject"]["netns"] == lab.netns
    assert ev["close_wait_sockets"] == COUNT
    assert ev["peers"] == [[CLIENT, COUNT]]
    assert ev["local_ports"] == [[8080, COUNT]]
    assert ev["recv_q_ge_1"] == COUNT  # the byte and the FIN were never read

    # the same table through a snapshot file: the list path gives the same counts
    saved = tmp_path / "snap.json"
    doctor("--netns", lab.netns, "--window", "0", "--min-age", "0", "--save-snapshot",
           str(saved), timeout=120)
    _rc, again = doctor("--snapshot", str(saved), "--min-age", "0", timeout=120)
    g = finding(again, "close-wait-leak", pid=server.pid)
    got = _evidence(g)
    for what in ("close_wait_sockets", "peers", "local_ports", "recv_q_ge_1", "recv_q_0"):
        assert got[what] == ev[what], what
    # (a live finding's subject also carries the identity read with the data: diagnose.common.identify)
    assert g["subject"] == {k: v for k, v in f["subject"].items() if k in g["subject"]}
    assert g["severity"] == f["severity"]


def test_the_live_doctor_keeps_no_socket_list(lab):
    """The streamed snapshot holds no socket (the Tally has them all)."""
    lab.spawn("leak-server", SERVER, "8080", "50")
    lab.spawn("connect", SERVER, "8080", "50", CLIENT)
    time.sleep(0.3)
    code = (
        "import sys\n"
        "from halfopen.collect import doctor_input, netns\n"
        "from halfopen.diagnose import report\n"
        "t = report.new_tally()\n"
        "ns = netns.named(sys.argv[1])\n"
        "snap, _n, _note, _s = doctor_input.take_live((ns,), 0, read_nginx=False, sink=t.add)\n"
        "print(len(snap.sockets), t.spaces[sys.argv[1]].states[8], t.count)\n")
    out = subprocess.run([sys.executable, "-c", code, lab.netns], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-1000:]
    kept, close_wait, total = map(int, out.stdout.split())
    assert kept == 0 and close_wait == 50 and total >= 51  # 50 + the listener
