"""Fixtures for tests/fix: servers in a test namespace that report back, and a CLI runner."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from halfopen.cli.main import main

PEER = os.path.join(os.path.dirname(__file__), "peer.py")


@dataclass
class Peer:
    proc: subprocess.Popen
    pid: int
    port: int
    fds: list[int]
    clients: list[int]

    def ask(self, command: str, timeout: float = 15.0) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return read_line(self.proc, timeout)


def read_line(proc: subprocess.Popen, timeout: float) -> dict:
    ready, _w, _x = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no answer from pid {proc.pid} within {timeout}s")
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"pid {proc.pid} exited: {proc.stderr.read()}")
    return json.loads(line)


@pytest.fixture
def start_peer(netns: str) -> Iterator:
    """start_peer(n, close=False) -> Peer inside `netns`; all stopped after the test."""
    started: list[subprocess.Popen] = []

    def start(count: int, close: bool = False) -> Peer:
        argv = ["ip", "netns", "exec", netns, sys.executable, PEER, str(count)]
        if close:
            argv.append("--close")
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        started.append(proc)
        hello = read_line(proc, 10)
        return Peer(proc, hello["pid"], hello["port"], hello["fds"], hello["clients"])

    try:
        yield start
    finally:
        for proc in started:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def run(capsys) -> Iterator:
    """run(*argv) -> (exit code, stdout, stderr) of halfopen, in this process."""

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    yield call


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Iterator:
    """Journal and sysctl.d file in a temporary directory."""
    monkeypatch.setenv("HALFOPEN_JOURNAL", str(tmp_path / "journal.jsonl"))
    monkeypatch.setenv("HALFOPEN_SYSCTL_FILE", str(tmp_path / "sysctl.d" / "60-halfopen.conf"))
    yield tmp_path
