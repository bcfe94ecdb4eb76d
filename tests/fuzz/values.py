"""Hostile values: what a careless operator or an attacker types or feeds in.

Each pool mixes values that must be accepted with values that must be refused
in one line; `BAD_*` pools hold only values every option of that kind refuses.
"""

from __future__ import annotations

import functools

from hypothesis import strategies as st

UNICODE_DIGITS = ["²", "١٢", "１２", "߂", "𝟗", "٣٠٠", "Ⅻ", "½"]
BAD_INTS = ["", " ", "-1", "0x10", "1_000", "1e3", "inf", "nan", "NaN", "-0", "+-1", "9" * 30,
            "9" * 5000, "1.5", "\0", "\udcff", "12abc", "99999999999999999999"] + UNICODE_DIGITS
BAD_NUMBERS = ["", "inf", "-inf", "nan", "1e309", "-1", "1e5", "0x1p3", "1_0", "--1", ".",
               "9" * 400, "\udcff", "\0"] + UNICODE_DIGITS
BAD_PATHS = ["", "a\0b", "\0", "x" * 5000]
BAD_NETNS = ["", ".", "..", "a/b", "/", "../etc", "x" * 300, "a\0b"]
BAD_LISTEN = ["127.0.0.1:²", "127.0.0.1:", ":", "127.0.0.1:0", "127.0.0.1:70000", "é:80",
              "[::1", "::1:99999", "host:-1", "a" * 300 + ":80", "1.2.3.4:1e3", "\udcff:80", ""]


@functools.cache
def text() -> st.SearchStrategy[str]:
    """Any short text, surrogates (non-UTF-8 argv bytes) and NUL included."""
    return st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@functools.cache
def ints(lo: int = 0, hi: int = 70000) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(BAD_INTS), st.integers(lo, hi).map(str),
                     st.integers(-(2**70), 2**70).map(str), text())


@functools.cache
def numbers() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(BAD_NUMBERS), st.sampled_from(["0", "0.5", "1", "3", "60"]),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr), text())


@functools.cache
def durations() -> st.SearchStrategy[str]:
    return st.one_of(numbers(), st.builds(lambda n, u: n + u, numbers(),
                                          st.sampled_from(["s", "m", "h", "d", "w", "x", ""])))


@functools.cache
def json_values(max_leaves: int = 20) -> st.SearchStrategy[object]:
    """Any JSON value, with the edges: huge ints, extreme floats, long strings."""
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70),
        st.sampled_from([0, -1, 2**63, 2**64, -(2**63) - 1, 10**30]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([1e308, -1e308, 5e-324, 0.0, -0.0]),
        st.text(max_size=20), st.sampled_from(["", "x" * 5000, "\udcff", "²", "host", "net:[1]"]))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=max_leaves)
