"""Real cgroups named as container runtimes name them, and real processes in them.

Every cgroup is made under one top directory of our own (hoC-<uuid8>) in
the cgroup v2 hierarchy (/sys/fs/cgroup/unified here) or the v1 name=systemd
one; a process is moved in by writing its pid to cgroup.procs. Afterwards
our processes are killed, anything still inside is moved back to the root
cgroup, and the directories are removed leaf first.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
LEAKER = os.path.join(os.path.dirname(HERE), "watch", "leaker.py")
CGROUP2 = "/sys/fs/cgroup/unified"
CGROUP1 = "/sys/fs/cgroup/systemd"  # the v1 name=systemd hierarchy, no controllers


def _mounted(path: str, fstype: str) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path and line.split()[2] == fstype for line in f)


class Cgroups:
    def __init__(self, hierarchy: str) -> None:
        if not (os.geteuid() == 0 and os.path.isdir(hierarchy)):
            pytest.skip(f"needs root and a cgroup hierarchy at {hierarchy}")
        self.hierarchy = hierarchy
        self.top = os.path.join(hierarchy, f"hoC-{uuid.uuid4().hex[:8]}")
        os.mkdir(self.top)

    def make(self, relative: str) -> str:
        path = os.path.join(self.top, relative)
        os.makedirs(path)
        return path

    def move(self, pid: int, path: str) -> None:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def remove(self) -> None:
        for dirpath, _dirs, _files in os.walk(self.top):
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    left = f.read().split()
            except FileNotFoundError:
                continue
            for pid in left:  # ours: moved in by the test (already killed: a zombie's exit)
                try:
                    self.move(int(pid), self.hierarchy)
                except (ProcessLookupError, OSError):
                    pass
        for dirpath, _dirs, _files in sorted(os.walk(self.top), key=lambda w: -len(w[0])):
            os.rmdir(dirpath)


def _groups(hierarchy: str, fstype: str) -> Iterator[Cgroups]:
    if not _mounted(hierarchy, fstype):
        pytest.skip(f"no {fstype} hierarchy at {hierarchy}")
    groups = Cgroups(hierarchy)
    try:
        yield groups
    finally:
        groups.remove()


@pytest.fixture
def cgroup2() -> Iterator[Cgroups]:
    yield from _groups(CGROUP2, "cgroup2")


@pytest.fixture
def cgroup1() -> Iterator[Cgroups]:
    """The v1 name=systemd hierarchy: no controllers, a cgroup per container there too."""
    yield from _groups(CGROUP1, "cgroup")


class Leakers:
    """leaker.py processes, each in a network namespace of its own (unshare --net,
    unnamed, as a pod's), holding N CLOSE_WAIT sockets on that namespace's lo."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, initial: int = 5, rate: float = 0.0) -> subprocess.Popen:
        # unshare and sh exec: the pid Popen returns is the leaker's
        script = f'ip link set lo up && exec "$0" {LEAKER} --initial {initial} --rate {rate}'
        p = subprocess.Popen(["unshare", "--net", "sh", "-c", script, sys.executable],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        ready, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline() if ready else ""
        if not line.startswith("ready"):
            p.kill()
            raise AssertionError(f"leaker not ready: {line!r} {p.stderr.read()[-300:]}")
        return p

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()


@pytest.fixture
def leakers() -> Iterator[Leakers]:
    started = Leakers()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def node_root(tmp_path) -> str:
    """A node's filesystem root for HALFOPEN_HOST_ROOT: the runtimes' files go below."""
    return str(tmp_path)


def install(root: str, runtime_path: str, data_file: str) -> None:
    path = os.path.join(root, runtime_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copy(os.path.join(DATA, data_file), path)
