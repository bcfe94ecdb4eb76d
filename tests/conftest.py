"""Shared fixtures: network namespaces the tests create and always remove."""

from __future__ import annotations

import os
import subprocess
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
