"""Any input to the filter parser ends in a Filter or one UsageError line, nothing else.

Hypothesis draws token sequences from the filter language's own words mixed
with arbitrary unicode, and deep nestings of parentheses and `not`; the parser,
the bytecode compiler and the matcher must never raise anything else
(RecursionError, ValueError, UnicodeEncodeError, struct.error ...).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halfopen.collect import bytecode, filter_names
from halfopen.errors import UsageError
from halfopen.model.filter import JOIN_WORDS, MAX_DEPTH, OPERATORS, WORDS, parse
from halfopen.model.socket import Socket
from halfopen.model.states import STATE_WORDS

VALUES = ["22", ":22", "026", "0x16", "+22", "-1", "70000", ":*", "*", ":", "", "²", "٣",
          "198.18.0.1", "198.18/15", "1.2.3.4:5", "[::1]", "[::1]:22", "::1:22", "2001:db8::1",
          "fd00::/8", "[2001:db8::]/32:22", "inet:1.2.3.4", "inet6::22", "unix:/x", "any",
          "localhost", "256", "0x10/0xff", "1/2/3", "lo", "v0", "/", "/nosuch", "[", "]",
          "1.2.3.4/255.255.0.0", "1.2.3.4/33", "0400.1.2.3", "\\", "\\ ", "a\tb", "\x00",
          "\udcff", "ß", "ＡＮＤ", "ssh", "https", "%lo", "fe80::1%lo"]
VOCAB = (sorted(WORDS) + sorted(JOIN_WORDS) + sorted(OPERATORS) + sorted(STATE_WORDS)
         + VALUES + ["AND", "Or", "NOT", "STATE", "Established"])

token = st.one_of(st.sampled_from(VOCAB), st.text(max_size=8))
words = st.lists(token, max_size=20)
# Hypothesis spends ~2 ms drawing a structured list; a seed drawn by Hypothesis
# and expanded here costs a tenth of that, so 20,000 sequences stay cheap.
ALPHABET = "abcAND()!=<>&|:/.*[]%\\ \t\n0123456789x+-²٣ßＡ\x00\udcff\u202e"


def from_seed(seed: int) -> list[str]:
    """A token sequence: mostly the language's words, some random unicode."""
    r = random.Random(seed)
    out = []
    for _ in range(r.randint(0, 30)):
        if r.random() < 0.8:
            out.append(r.choice(VOCAB))
        else:
            out.append("".join(r.choice(ALPHABET) for _ in range(r.randint(0, 8))))
    return out


def _nested(depth: int, opener: str, inner: str) -> list[str]:
    closer = [")"] * depth if opener == "(" else []
    return [opener] * depth + inner.split() + closer


deep = st.builds(_nested, st.integers(0, 3 * MAX_DEPTH),
                 st.sampled_from(["(", "not", "!"]),
                 st.sampled_from(["sport = :22", "dst 198.18.0.1 or autobound", "", ")"]))
long_chain = st.builds(lambda n, join: (f"sport = :{n} " + " ".join(
    f"{join} dport = :{i}" for i in range(n))).split(),
    st.integers(0, 1500), st.sampled_from(["and", "or", "", "&&"]))
alternating = st.builds(lambda n: " ".join(
    f"sport = :{i} {'or' if i % 2 else 'and'}" for i in range(n)).split() + ["autobound"],
    st.integers(0, 400))

SOCK = Socket(6, 1, "::ffff:198.18.0.1", 22, "2001:db8::1", 40000, 0, 0, 0, 0, 0, 0, 1, 1)


def _check(argv: list[str]) -> None:
    try:
        flt = parse(argv)
        names = filter_names.look_up(flt, mounts_file="/nonexistent")  # no real cgroup stat
        bound = flt.bind({name: 1 for name in flt.devices()}, (32768, 60999), *names)
    except UsageError as exc:  # also an unknown host name, found when binding
        msg = str(exc)
        assert msg and "\n" not in msg and exc.exit_code == 64
        msg.encode("utf-8")  # printable: no lone surrogate reaches the terminal
        return
    bytecode.compile_filter(bound)
    bound.matches(SOCK)
    flt.matches(SOCK)


@settings(max_examples=20000, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**63))
def test_random_token_sequences_parse_or_fail_cleanly(seed):
    _check(from_seed(seed))


@settings(max_examples=1000, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(words)
def test_drawn_token_lists_parse_or_fail_cleanly(argv):
    _check(argv)  # slower to draw, but Hypothesis can shrink a failure to its core


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(deep, long_chain, alternating))
def test_huge_nesting_and_length_parse_or_fail_cleanly(argv):
    _check(argv)


@pytest.mark.parametrize("argv", [
    ["("] * 335 + ["sport", "=", ":22"] + [")"] * 335,
    ["not"] * 1000 + ["sport", "=", ":22"],
    " or ".join(f"sport = :{i}" for i in range(1000)).split(),
    " ".join(f"sport = :{i} {'or' if i % 2 else 'and'}" for i in range(1000)).split()
    + ["dport", "=", ":1"],
    ["sport = :22"] * 30000,
])
def test_the_issue_s_deep_inputs_are_one_usage_line_or_parse(argv):
    _check(argv)


def test_a_long_or_list_parses_and_stays_shallow():
    flt = parse(" or ".join(f"sport = :{i}" for i in range(1000)).split())
    depth, todo = 0, [(flt.expr, 1)]
    while todo:
        e, d = todo.pop()
        depth = max(depth, d)
        todo += [(c, d + 1) for c in (getattr(e, "left", None), getattr(e, "right", None)) if c]
    assert depth <= 11  # balanced: log2(1000) + 1, not 1000
    assert flt.matches(Socket(4, 1, "1.2.3.4", 999, "1.2.3.5", 1, 0, 0, 0, 0, 0, 0, 1, 1))
    assert not flt.matches(Socket(4, 1, "1.2.3.4", 1000, "1.2.3.5", 1, 0, 0, 0, 0, 0, 0, 1, 1))
    kf = bytecode.compile_filter(flt)
    assert kf.exact and 0 < len(kf.bytecode) <= bytecode.MAX_BYTECODE
