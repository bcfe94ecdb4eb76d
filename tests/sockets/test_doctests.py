"""The filter modules' docstring examples (how ss reads ports, addresses, marks) are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ("halfopen.model.filter", "halfopen.model.filter_values",
           "halfopen.collect.filter_names")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod)
    assert result.failed == 0 and result.attempted > 0
