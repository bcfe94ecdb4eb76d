"""The worked examples in the watch modules' docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ("trend", "hostfacts", "view", "duration", "exporter", "svg", "report", "identity")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(f"halfopen.watch.{name}")
    result = doctest.testmod(mod)
    assert result.failed == 0 and result.attempted > 0
