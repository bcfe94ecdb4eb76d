"""Shared fixtures: network namespaces the tests create and always remove."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest


def sh(*cmd: str, check: bool = True, netns: str | None = None, **kw) -> subprocess.CompletedProcess:
    """Run a command (inside `netns` when given); fail the test with its stderr."""
    argv = list(cmd)
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


def make_netns(prefix: str = "hot") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    sh("ip", "netns", "add", name)
    sh("ip", "link", "set", "lo", "up", netns=name)
    return name


def remove_netns(name: str) -> None:
    # kill what still runs inside, then drop the namespace
    pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            pass
    sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with lo up, removed after the test."""
    name = make_netns()
    try:
        yield name
    finally:
        remove_netns(name)


@functools.cache
def nobody_cannot_run_halfopen() -> str:
    """Why user nobody cannot run this interpreter with halfopen importable, or "".

    A pyenv interpreter under /root (mode 0700) is out of nobody's reach; scripts/test
    keeps the Debian run's venv in a directory every user can enter, so the tests that
    run halfopen as nobody run there.
    """
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                            sys.executable, "-c", "import halfopen, prometheus_client"],
                           capture_output=True, text=True, timeout=60, cwd="/")
    if probe.returncode == 0:
        return ""
    last = (probe.stderr.strip().splitlines() or ["?"])[-1]
    return f"user nobody cannot run {sys.executable} with halfopen ({last})"
