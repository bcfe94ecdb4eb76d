"""Shared fixtures: network namespaces the tests create and always remove (tests/helpers.py),
and tracefs left as a test found it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests.helpers import make_netns, remove_netns

from halfopen.kernel import tracefs


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with lo up, removed after the test."""
    name = make_netns()
    try:
        yield name
    finally:
        remove_netns(name)


@pytest.fixture
def tracefs_restored() -> Iterator[list[int]]:
    """Yields a list the test adds its halfopen pids to; afterwards removes any
    instance named for them and unmounts tracefs if it was not mounted before."""
    if os.geteuid() != 0:
        pytest.skip("tracefs needs root")
    before = tracefs.mounted_at()
    pids: list[int] = []
    try:
        yield pids
    finally:
        where = tracefs.mounted_at()
        if where is not None:
            for pid in pids:
                for suffix in (tracefs.CLOSE_SUFFIX, ""):
                    try:
                        os.rmdir(f"{where}/instances/{tracefs.PREFIX}{pid}{suffix}")
                    except FileNotFoundError:
                        pass
            if before is None:
                tracefs.unmount(where)
