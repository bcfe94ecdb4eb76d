"""A cgroup path in a filter is looked up in the cgroup2 hierarchy only (issue 20, item 7).

ss's get_cgroup2_id() first asks name_to_handle_at(AT_FDCWD, PATH): run from
a directory a user controls, `ss cgroup NAME` takes the handle of the user's
own directory NAME. halfopen reads PATH under the cgroup2 mount only, and
refuses a path that leaves that file system.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from tests.helpers import run_halfopen
from tests.security.conftest import one_line

from halfopen.collect import filter_names

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def _halfopen(cwd: str, *words: str) -> subprocess.CompletedProcess:
    return run_halfopen("sockets", "--json", "--", *words, cwd=cwd,
                        env={"PYTHONPATH": os.path.abspath(SRC)})


def test_a_planted_directory_in_the_working_directory_is_not_a_cgroup(attacker):
    name = f"planted-{attacker.name}"
    made = attacker.run(["mkdir", name])
    assert made.wait(10) == 0
    assert os.path.isdir(os.path.join(attacker.home, name))  # the user's own directory
    if filter_names._cgroup2_mount(filter_names.MOUNTS_FILE) is None:
        pytest.skip("no cgroup2 mount here")
    proc = _halfopen(attacker.home, "cgroup", name)
    assert proc.returncode == 64
    line = one_line(proc.stderr)
    assert name in line and "No such file" in line


def test_a_path_leaving_the_cgroup2_file_system_is_refused(attacker):
    proc = _halfopen(attacker.home, "cgroup", "/../../../../../" + attacker.home.lstrip("/"))
    assert proc.returncode == 64
    assert "not a cgroup directory" in one_line(proc.stderr)
