"""Fixtures for the watch tests: a CLOSE_WAIT leaker, free ports, bounded waits.

Everything started here is stopped in a finally, also when the test fails.
"""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests import helpers

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Leaker:
    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.port = port


@pytest.fixture
def start_leaker() -> Iterator[Callable[..., Leaker]]:
    started: list[subprocess.Popen] = []

    def start(initial: int = 10, rate: float = 0.0, max_: int = 1000) -> Leaker:
        proc = subprocess.Popen([sys.executable, str(HERE / "leaker.py"), "--initial",
                                 str(initial), "--rate", str(rate), "--max", str(max_)],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        line = proc.stdout.readline()
        assert line.startswith("ready "), f"leaker did not start: {line!r}"
        return Leaker(proc, int(line.split()[1]))

    try:
        yield start
    finally:
        for p in started:
            stop(p)


# the CLI from the checkout, its tables 220 columns wide, no colours
run_halfopen = functools.partial(helpers.run_halfopen, env={"COLUMNS": "220", "TERM": "dumb"},
                                 timeout=30.0, cwd=ROOT)
