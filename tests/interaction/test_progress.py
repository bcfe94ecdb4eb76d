"""The progress line: on a terminal stderr (a real pty) while the doctor's counter window
runs or a socket table is read, erased before the output; nothing when stderr is piped."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from tests.helpers import run_halfopen, start_halfopen

from halfopen.cli import progress

DOCTOR = ("doctor", "--window", "2")
ERASE = b"\r\x1b[K"


def read_all(fd: int, proc: subprocess.Popen, timeout: float = 120) -> bytes:
    """Everything written to the pty's master until `proc` exits."""
    data = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the slave side is closed
                break
            data += chunk
        elif proc.poll() is not None:
            break
    return data


def test_the_doctor_window_shows_a_line_on_a_terminal():
    master, slave = pty.openpty()
    try:
        proc = start_halfopen(*DOCTOR, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        shown = read_all(master, proc)
        out = proc.stdout.read()
        proc.wait(30)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert b"halfopen: sampling counters over a 2 s window... " in shown, shown
    assert b"/2 s" in shown
    assert shown.endswith(ERASE), shown[-80:]  # erased before the report
    assert b"sampling" not in out and out.startswith(b"halfopen doctor")


def test_nothing_on_a_piped_stderr():
    r = run_halfopen(*DOCTOR, text=False, timeout=120)
    assert r.stderr == b"", r.stderr
    assert r.stdout.startswith(b"halfopen doctor")
    nagios = run_halfopen(*DOCTOR, "--nagios", text=False, timeout=120)
    assert nagios.stderr == b""


def test_a_long_read_counts_its_items_on_a_terminal():
    """A buffered table of many sockets: the count grows on the terminal line."""
    master, slave = pty.openpty()
    term = os.fdopen(slave, "w")
    try:
        def slow():
            for i in range(12):
                time.sleep(0.1)
                yield i
        got = list(progress.counting(slow(), "reading sockets", "sockets", stream=term))
        assert got == list(range(12))
        term.flush()
        shown = b""
        while select.select([master], [], [], 0.2)[0]:
            shown += os.read(master, 65536)
    finally:
        term.close()
        os.close(master)
    assert b"halfopen: reading sockets... " in shown and b" sockets, " in shown, shown
    assert shown.endswith(ERASE)


def test_quick_work_and_non_terminals_write_nothing(tmp_path):
    with open(tmp_path / "err", "w") as f, progress.progress("waiting", 1.0, stream=f):
        time.sleep(0.8)
    assert (tmp_path / "err").read_text() == ""
    master, slave = pty.openpty()
    term = os.fdopen(slave, "w")
    try:
        with progress.progress("quick", stream=term):
            pass  # shorter than AFTER_S: no line at all
        assert not select.select([master], [], [], 0.3)[0]
    finally:
        term.close()
        os.close(master)
