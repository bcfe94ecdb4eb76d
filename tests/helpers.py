"""What the test folders share: commands, network namespaces, polling, running the CLI.

Imported as `tests.helpers` (pytest puts the checkout on sys.path); the
fixtures built on these are in tests/conftest.py.

The CLI in a subprocess is run through `run_halfopen` (waits for it),
`start_halfopen` (a Popen) or `halfopen_argv` (the words, for a shell line or a
command definition), so it is found one way: `python -m halfopen` with this
interpreter, which imports what this process imports (the checkout in
development, the installed wheel under scripts/test). Only tests of another way
in bypass them: tests/install (the console script), the pyz, code injected with
`python -c`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

# the prefix that runs a command as user nobody (uid and gid 65534, no groups)
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")


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


@functools.cache
def nobody_cannot_run_halfopen() -> str:
    """Why user nobody cannot run this interpreter with halfopen importable, or "".

    A pyenv interpreter under /root (mode 0700) is out of nobody's reach; scripts/test
    keeps the Debian run's venv in a directory every user can enter, so the tests that
    run halfopen as nobody run there.
    """
    probe = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import halfopen, prometheus_client"],
                           capture_output=True, text=True, timeout=60, cwd="/")
    if probe.returncode == 0:
        return ""
    last = (probe.stderr.strip().splitlines() or ["?"])[-1]
    return f"user nobody cannot run {sys.executable} with halfopen ({last})"


def wait_for(what: str, check: Callable[[], object], timeout: float = 20.0,
             step: float = 0.2) -> object:
    """Poll `check` until it returns something true (and return that); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(step)


def halfopen_argv(*args: str, netns: str | None = None, prefix: tuple[str, ...] = (),
                  python: str = sys.executable) -> list[str]:
    """The command line that runs `halfopen ARGS`: inside `netns` when given, then
    through `prefix` (setpriv, unshare, prlimit...), with `python` (another interpreter)."""
    outer = ("ip", "netns", "exec", netns) if netns is not None else ()
    return [*outer, *prefix, python, "-m", "halfopen", *args]


def _environ(env: dict[str, str] | None) -> dict[str, str]:
    return dict(os.environ, **(env or {}))


def run_halfopen(*args: str, check: bool = False, netns: str | None = None,
                 prefix: tuple[str, ...] = (), python: str = sys.executable,
                 env: dict[str, str] | None = None, timeout: float = 60,
                 **kw) -> subprocess.CompletedProcess:
    """Run the CLI the way a user does and wait: exit code, stdout, stderr (text unless
    text=False). check: fail the test on a non-zero exit, with its stderr. env:
    variables added to this process's environment. netns, prefix, python: as
    `halfopen_argv`. Other keywords (cwd, input, stdin) go to subprocess.run."""
    kw.setdefault("text", True)
    proc = subprocess.run(halfopen_argv(*args, netns=netns, prefix=prefix, python=python),
                          capture_output=True, timeout=timeout, env=_environ(env), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"halfopen {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
    return proc


def halfopen_json(*args: str, **kw) -> dict:
    """`halfopen ARGS --json`, which must exit 0, parsed."""
    return json.loads(run_halfopen(*args, "--json", check=True, **kw).stdout)


def start_halfopen(*args: str, netns: str | None = None, prefix: tuple[str, ...] = (),
                   env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    """The CLI started in the background (the caller stops it). netns, prefix: as
    `halfopen_argv`; env: variables added to this process's environment; other
    keywords (stdout, stderr, text, cwd, preexec_fn) go to Popen."""
    return subprocess.Popen(halfopen_argv(*args, netns=netns, prefix=prefix), env=_environ(env), **kw)


@contextlib.contextmanager
def nofile_at_least(least: int, why: str) -> Iterator[None]:
    """RLIMIT_NOFILE soft raised to 8192 (or the hard limit) for a test with many
    sockets, restored after; skipped when the hard limit leaves less than `least`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if want < least:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for {why}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
