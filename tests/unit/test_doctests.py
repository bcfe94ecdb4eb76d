"""Every docstring example in the package runs as a test: one collector, so a
module cannot have examples that no test runs."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import halfopen


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(halfopen.__path__, "halfopen.")
                  if m.name != "halfopen.__main__")


def _has_examples(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as f:
        return ">>> " in f.read()


WITH_EXAMPLES = [name for name in _modules() if _has_examples(name)]


def test_the_collector_finds_the_examples():
    # walk_packages found the package (an empty list would pass every test below)
    assert len(WITH_EXAMPLES) >= 40, WITH_EXAMPLES


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, result
