"""Fixtures for tests/sockets: a namespace full of real sockets in every state.

The `zoo` is built once per module (TIME_WAIT lasts 60 s, so a module must
finish well inside that) in its own network namespace, by two helper
processes ("ho-srv" and "ho-cli"), so owners are other pids and the namespace
holds our sockets and nothing else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from sockets_support import Zoo, build_zoo, make_netns, remove_netns  # noqa: E402


@pytest.fixture(scope="module")
def zoo() -> Iterator[Zoo]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    name = make_netns()
    z = None
    try:
        z = build_zoo(name)
        yield z
    finally:
        if z is not None:
            z.stop()
        remove_netns(name)
