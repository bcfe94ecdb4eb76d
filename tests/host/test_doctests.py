"""The parsers' docstring examples run as tests."""

from __future__ import annotations

import doctest

import pytest

from halfopen.collect.host import conntrack, counters, files, kmsg, limits, sockstat, stalefds, tunables


@pytest.mark.parametrize("mod", [conntrack, counters, files, kmsg, limits, sockstat, stalefds,
                                 tunables])
def test_docstring_examples(mod):
    result = doctest.testmod(mod)
    assert result.failed == 0 and result.attempted > 0
