"""Fixtures for the monitoring tests: a cgroup named like a systemd service, leakers
started in it, and real Prometheus, Alertmanager and Nagios processes that the
tests start with their own configuration, port and data directory and always stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers.conftest import cgroup2, node_root  # noqa: F401 - fixtures for the pod test
from watch.conftest import HERE as WATCH_TESTS
from watch.conftest import free_port, stop

__all__ = ["free_port", "stop", "Service", "start_process"]

CGROUP2 = Path("/sys/fs/cgroup/unified")
LEAKER = WATCH_TESTS / "leaker.py"


class Service:
    """A cgroup `hoM-<id>.slice/hoM-leak-<id>.service`: /proc/PID/cgroup of a process in
    it names the unit as systemd's would. Removed after its processes are gone."""

    def __init__(self, root: Path = CGROUP2) -> None:
        tag = uuid.uuid4().hex[:8]
        self.slice = root / f"hoM-{tag}.slice"
        self.unit = f"hoM-leak-{tag}.service"
        self.path = self.slice / self.unit
        self.path.mkdir(parents=True)
        self.procs: list[subprocess.Popen] = []

    def join(self) -> None:
        """preexec_fn: move the child itself (cgroup.procs takes 0 as 'me')."""
        with open(self.path / "cgroup.procs", "w") as f:
            f.write("0")

    def start_leaker(self, initial: int = 20, rate: float = 0.0, max_: int = 500) -> tuple[subprocess.Popen, int]:
        proc = subprocess.Popen([sys.executable, str(LEAKER), "--initial", str(initial),
                                 "--rate", str(rate), "--max", str(max_)],
                                stdout=subprocess.PIPE, text=True, preexec_fn=self.join)
        self.procs.append(proc)
        line = proc.stdout.readline()
        assert line.startswith("ready "), f"leaker did not start: {line!r}"
        return proc, int(line.split()[1])

    def remove(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        os.rmdir(self.path)
        os.rmdir(self.slice)


@pytest.fixture
def service() -> Iterator[Service]:
    if not (CGROUP2 / "cgroup.procs").exists():
        pytest.skip(f"no writable cgroup2 hierarchy at {CGROUP2}")
    svc = Service()
    try:
        yield svc
    finally:
        svc.remove()


def start_process(argv: list[str], log: Path) -> subprocess.Popen:
    """A daemon the test owns, in its own process group, output to `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process started by start_process and whatever it forked (by its group id)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
