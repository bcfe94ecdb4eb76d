"""The trace tests need root and tracefs; each leaves tracefs as it found it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests.trace.trace_support import trace_mount

from halfopen.kernel import tracefs


@pytest.fixture
def tracefs_restored() -> Iterator[list[int]]:
    """Yields a list the test adds its halfopen pids to; afterwards removes any
    instance named for them and unmounts tracefs if it was not mounted before."""
    if os.geteuid() != 0:
        pytest.skip("tracefs needs root")
    before = trace_mount()
    pids: list[int] = []
    try:
        yield pids
    finally:
        where = trace_mount()
        if where is not None:
            for pid in pids:
                for suffix in (tracefs.CLOSE_SUFFIX, ""):
                    try:
                        os.rmdir(f"{where}/instances/{tracefs.PREFIX}{pid}{suffix}")
                    except FileNotFoundError:
                        pass
            if before is None:
                tracefs.unmount(where)
