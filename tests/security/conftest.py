"""Helpers for the attack tests: halfopen as a subprocess, planted symlinks, victims."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from tests import helpers
from tests.helpers import make_netns, remove_netns
from tests.security.hostile import Attacker, make_attacker

# the CLI as root would run it, nothing on stdin
run_halfopen = functools.partial(helpers.run_halfopen, timeout=120, stdin=subprocess.DEVNULL)


def one_line(text: str) -> str:
    """The single line a refusal prints; fails the test on a traceback or several lines."""
    lines = [x for x in text.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


@pytest.fixture
def victim(tmp_path) -> Iterator[str]:
    """A file an attacker wants root to overwrite; the test checks it stays the same."""
    path = tmp_path / "victim"
    path.write_text("precious\n")
    os.chmod(path, 0o644)
    yield str(path)
    assert path.read_text() == "precious\n", "the symlink's target was written"


@pytest.fixture
def netns() -> Iterator[str]:
    name = make_netns("hoS")
    try:
        yield name
    finally:
        remove_netns(name)


def ns_sysctl(ns: str, key: str) -> str:
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/sys/" + key.replace(".", "/")],
                         capture_output=True, text=True, check=True).stdout
    return " ".join(out.split())


def set_ns_sysctl(ns: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                    f"echo '{value}' > /proc/sys/{key.replace('.', '/')}"], check=True)


@pytest.fixture(scope="session")
def attacker() -> Iterator[Attacker]:
    """A real unprivileged local user (useradd), removed after the session.

    Its home is under /tmp itself: pytest's own base (/tmp/pytest-of-root) is
    0700, so a home below it could not be reached (not even as a cwd) by the user.
    """
    base = tempfile.mkdtemp(prefix="halfopen-attacker-")
    try:
        os.chmod(base, 0o755)
        with make_attacker(base) as who:
            yield who
    finally:
        shutil.rmtree(base, ignore_errors=True)
