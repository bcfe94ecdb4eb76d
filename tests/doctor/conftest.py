"""The `lab` fixture: a test namespace with addresses and the processes started in it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from doctor_support import Lab  # noqa: E402


@pytest.fixture
def lab(netns: str) -> Iterator[Lab]:
    lab = Lab(netns)
    try:
        yield lab
    finally:
        lab.stop()
