"""The fuzz suite's fixtures; the harness itself is harness.py (a name of its own:
every test folder has a conftest, and `from conftest import` would take whichever
one pytest imported first)."""

from __future__ import annotations

from harness import work  # noqa: F401  (the scratch-directory fixture)
