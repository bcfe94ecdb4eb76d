"""kernel.procfs: the /proc readers, on this test's own process and a child it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from halfopen.kernel import procfs as procfs


def test_reads_a_child_it_started():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in procfs.pids()
        started = procfs.start_time(child.pid)
        assert started is not None and started >= (procfs.start_time(os.getpid()) or 0)
        assert procfs.comm(child.pid) == procfs.read_comm(child.pid)
        assert int(procfs.status(child.pid)["PPid"]) == os.getpid()
        assert procfs.ns_inode(child.pid) == procfs.ns_inode("thread-self")
        assert procfs.cgroup(child.pid) == procfs.cgroup(os.getpid())
        assert abs(procfs.started_epoch(started) - time.time()) < 120
    finally:
        child.kill()
        child.wait()
    assert procfs.start_time(child.pid) is None and procfs.comm(child.pid) is None
    with pytest.raises(FileNotFoundError):
        procfs.status(child.pid)


def test_host_facts():
    assert procfs.boot_time() < time.time()
    with open("/proc/sys/fs/nr_open") as f:
        assert procfs.nr_open() == int(f.read())


def test_bad_btime_names_the_file():
    with pytest.raises(ValueError, match=r"^x:2: not an integer 'y'"):
        procfs.parse_btime("cpu 1\nbtime y\n", "x")
    with pytest.raises(ValueError, match="x: no btime line"):
        procfs.parse_btime("cpu 1\n", "x")
