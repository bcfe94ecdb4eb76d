"""halfopen_collector_success says which collector could not read what it reads: the same
live scrape as root and as `nobody` (no capabilities), whose reads of other processes'
fds and limits, and of the kernel log under dmesg_restrict, the kernel refuses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from tests.helpers import nobody_cannot_run_halfopen

SCRAPE = """
from prometheus_client import generate_latest
from halfopen.watch.serving.exporter import registry
from halfopen.watch.sampler import Sampler
print(generate_latest(registry(Sampler())).decode())
"""


def scrape(*prefix: str) -> dict[str, float]:
    unreachable = nobody_cannot_run_halfopen() if prefix else ""
    if unreachable:
        pytest.skip(unreachable)
    r = subprocess.run([*prefix, sys.executable, "-c", SCRAPE], capture_output=True, text=True,
                       timeout=300, cwd="/")
    assert r.returncode == 0, r.stderr
    return {m[0]: float(m[1]) for m in
            re.findall(r'^halfopen_collector_success\{collector="([^"]+)"\} (\S+)$', r.stdout, re.M)}


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv (util-linux)")
def test_collector_success_as_root_and_as_nobody():
    root = scrape()
    # (root's "limits" is not asserted: a process of another user namespace may refuse
    # even root its fds, and on a shared host one may come and go during the scan)
    assert root["sockets"] == root["host"] == root["doctor"] == 1.0, root
    nobody = scrape("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all")
    assert nobody["sockets"] == 1.0  # sock_diag needs no privilege
    assert nobody["limits"] == 0.0  # root's /proc/PID/fd and limits are not ours to read
    with open("/proc/sys/kernel/dmesg_restrict") as f:
        if f.read().strip() == "1":
            assert nobody["kernel-log"] == 0.0 and root["kernel-log"] == 1.0
    assert set(nobody) == set(root)
