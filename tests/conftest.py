"""Shared fixtures: network namespaces the tests create and always remove (tests/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.helpers import make_netns, remove_netns


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with lo up, removed after the test."""
    name = make_netns()
    try:
        yield name
    finally:
        remove_netns(name)
