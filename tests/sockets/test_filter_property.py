"""Any input to the filter parser ends in a Filter or one UsageError line, and a
Filter's kernel bytecode and userspace matcher select the same real sockets.

Hypothesis draws token sequences from the filter language's own words mixed
with arbitrary unicode, and deep nestings of parentheses and `not`; the parser,
the bytecode compiler and the matcher must never raise anything else
(RecursionError, ValueError, UnicodeEncodeError, struct.error ...), and what
they build must hold together (_check). The same sequences, and filters built
from the zoo's own ports and addresses, then run through the kernel on the
zoo's real sockets (test_kernel_and_userspace_agree_*): the kernel must take
every program and select what `Filter.matches` selects.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halfopen.collect import bytecode, diag_replies, filter_names, netns
from halfopen.errors import UsageError
from halfopen.kernel import netlink
from halfopen.model.filter import JOIN_WORDS, MAX_DEPTH, OPERATORS, WORDS, AutoBound, Filter, parse
from halfopen.model.filter import _any_leaf as any_leaf
from halfopen.model.socket import Socket
from halfopen.model.states import ALL_STATES, STATE_WORDS

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


def _bind(argv: list[str], real_cgroups: bool = False) -> Filter | None:
    """The filter bound as collect() binds it (lo is index 1); None for a usage error,
    which must be one printable line."""
    try:
        flt = parse(argv)
        names = filter_names.look_up(flt, private_mount=False, **(
            {} if real_cgroups else {"mounts_file": "/nonexistent"}))  # no cgroup stat
        return flt.bind({name: 1 if name == "lo" else None for name in flt.devices()},
                        (32768, 60999), *names)
    except UsageError as exc:  # also an unknown host name, found when binding
        msg = str(exc)
        assert msg and "\n" not in msg and exc.exit_code == 64
        msg.encode("utf-8")  # printable: no lone surrogate reaches the terminal
        return None


def _check(argv: list[str]) -> None:
    bound = _bind(argv)
    if bound is None:
        return
    kf = bytecode.compile_filter(bound)
    # what the compiler built holds together: whole ops, a program the kernel takes in
    # one attribute, exact only when the kernel runs the whole filter
    assert len(kf.bytecode) % 4 == 0 and len(kf.bytecode) <= bytecode.MAX_BYTECODE
    assert not kf.exact or (kf.whole and not bound.dual)
    assert kf.states & ~ALL_STATES == 0
    for note in bound.notes:
        assert "\n" not in note and note.isprintable()
    # the matcher answers, and answers what the predicate answers
    assert bound.matches(SOCK) is bound.predicate()(SOCK) in (True, False)


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


# ------------------------------------------------------------------ on real sockets

def _key(s: Socket) -> tuple:
    return (s.family, s.local_addr, s.local_port, s.peer_addr, s.peer_port)


class Kernel:
    """One sock_diag socket inside the zoo's namespace, for many dumps."""

    def __init__(self, name: str) -> None:
        with netns.entered(netns.named(name)):
            self.nl = netlink.open_sock_diag()

    def dump(self, states: int = ALL_STATES, code: bytes = b"",
             families: tuple[int, ...] = (4, 6)) -> dict[tuple, Socket]:
        fams = [f for f, n in ((socket.AF_INET, 4), (socket.AF_INET6, 6)) if n in families]
        return {_key(s): s for fam in fams
                for s in diag_replies.dump_sockets(self.nl, fam, states, 0, code)}


@pytest.fixture(scope="module")
def kernel(zoo) -> Iterator[Kernel]:
    k = Kernel(zoo.netns)
    try:
        yield k
    finally:
        k.nl.close()


def _disagreement(bound: Filter, kernel: Kernel) -> tuple[str, int]:
    """"" when the kernel's answer and the matcher's agree on the zoo; and how many
    sockets the matcher selected.

    exact: the kernel's answer is the answer. Otherwise the kernel ran a looser
    filter or only one of ss's two readings (ports past 65535), and the
    matcher's answer must lie inside the kernel's; when the kernel ran the
    whole filter, what userspace then keeps of it (predicate(kernel_ran)) must
    be exactly the matcher's answer. `autobound`'s kernel half (the port lock)
    is not visible to userspace: only that the kernel takes the program.
    """
    kf = bytecode.compile_filter(bound)
    for _attempt in range(2):  # a TIME_WAIT socket may expire between the two dumps
        every = kernel.dump()
        try:
            got = kernel.dump(kf.states, kf.bytecode, kf.families)
        except netlink.NetlinkError as exc:
            return f"kernel refused the program: {exc}", 0
        got = {k: s for k, s in got.items() if k in every}
        user = {k for k, s in every.items() if bound.matches(s)}
        if any_leaf(bound.expr, lambda e: isinstance(e, AutoBound)) if bound.expr else False:
            return "", len(user)
        if kf.exact:
            wrong = set(got) ^ user
        else:
            wrong = user - set(got)
            if kf.whole:
                keep = bound.predicate(kernel_ran=True)
                wrong |= {k for k, s in got.items() if keep(s)} ^ user
        if not wrong:
            return "", len(user)
    return f"exact={kf.exact} whole={kf.whole}: {sorted(wrong)[:4]}", len(user)


def test_kernel_and_userspace_agree_on_the_seed_sequences(kernel):
    """The 20,000 sequences of the first test: each that parses runs through the kernel."""
    failures, compared = [], 0
    for seed in range(20000):
        argv = from_seed(seed)
        bound = _bind(argv, real_cgroups=True)
        if bound is None:
            continue
        compared += 1
        wrong, _size = _disagreement(bound, kernel)
        if wrong:
            failures.append(f"{' '.join(argv)!r}: {wrong}")
    assert not failures, f"{len(failures)} of {compared}:\n" + "\n".join(failures[:20])
    assert compared >= 500  # the sequences are not all refused


def _valid(rng: random.Random, ports: dict, depth: int) -> str:
    """A filter over the zoo's own ports and addresses (and ports outside 0-65535,
    ::/0, autobound), joined by and/or/not/( )."""
    if depth == 0 or rng.random() < 0.35:
        port = rng.choice([ports[4], ports[6], 9, 1024, 70000, 131071, -1, -64511, "*"])
        host = rng.choice(["198.18.0.1", "198.18.0.0/24", "[2001:2::1]", "2001:2::/64", "::/0",
                           "0.0.0.0/0", "[::ffff:198.18.0.1]", "*", "198.18.0.2"])
        return rng.choice([
            f"sport {rng.choice(['=', '!=', '<', '>', '<=', '>='])} :{port}",
            f"dport {rng.choice(['=', '!=', '<', '>', '<=', '>='])} :{port}",
            f"src {host}", f"dst {host}", f"dst {host}:{port}" if host != "*" else "dst *",
            "autobound", "fwmark 0", "dev lo", "cgroup /",
        ])
    shape = rng.random()
    if shape < 0.2:
        return f"not {_valid(rng, ports, depth - 1)}"
    parts = [_valid(rng, ports, depth - 1) for _ in range(rng.randint(2, 3))]
    joined = f" {rng.choice(['and', 'or', ''])} ".join(parts)
    return f"( {joined} )"


def test_kernel_and_userspace_agree_on_the_zoo_s_own_values(kernel, zoo):
    ports = zoo.listen_port
    rng = random.Random(20)
    failures, sizes = [], []
    every = len(kernel.dump())
    for _ in range(400):
        text = _valid(rng, ports, rng.randint(1, 3))
        bound = _bind(text.split(), real_cgroups=True)
        assert bound is not None, text
        wrong, size = _disagreement(bound, kernel)
        sizes.append(size)
        if wrong:
            failures.append(f"{text!r}: {wrong}")
    assert not failures, f"{len(failures)} differ:\n" + "\n".join(failures[:20])
    assert sum(0 < n < every for n in sizes) >= 100  # a good share select some, not all
