"""Fixtures for the interaction tests: the watch tests' leaker."""

from __future__ import annotations

from watch.conftest import HERE as WATCH_TESTS

LEAKER = WATCH_TESTS / "leaker.py"
