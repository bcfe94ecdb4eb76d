"""The owner map's hash table against a dict, on the inodes a scan can hand it."""

from __future__ import annotations

from array import array
from itertools import permutations

from hypothesis import given, settings
from hypothesis import strategies as st

from halfopen.collect.inode_table import _GOLDEN, _MASK64, InodeTable

# runs of consecutive inodes (get_next_ino's per-CPU batches), strays, and the
# ones no slot can hold: 0 and beyond 64 bits (a recorded /proc tree)
INODES = st.one_of(st.integers(10_000, 10_400), st.integers(1, 2**64 - 1),
                   st.sampled_from([0, 2**64, 2**70]))
PAIRS = st.lists(st.tuples(INODES, st.integers(0, 2**54 - 1)), max_size=400)


def build(pairs: list[tuple[int, int]]) -> InodeTable:
    # an array('Q') cannot hold the odd ones: the table gets them as a scan of a
    # recorded tree would, through plain sequences
    return InodeTable([i for i, _h in pairs], array("Q", [h for _i, h in pairs]))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(PAIRS, st.data())
def test_the_table_answers_as_a_dict_of_tuples(pairs, data):
    want: dict[int, tuple[int, ...]] = {}
    for inode, holder in pairs:
        want[inode] = want.get(inode, ()) + (holder,)
    table = build(pairs)
    assert len(table) == len(want)
    assert sorted(table) == sorted(want)
    looked = data.draw(st.lists(st.sampled_from(sorted(want)), unique=True) if want else st.just([]))
    for inode in looked:
        assert table.holders(inode) == want[inode]
    odd = {i for i in want if not 0 < i < 2**64}
    assert set(table.unfound()) == (set(want) - set(looked)) | odd
    for absent in (1, 10_399, 2**63, 2**64 - 1):
        if absent not in want:
            assert table.holders(absent) == ()


def test_a_million_consecutive_inodes_fill_half_the_slots():
    n = 1 << 20
    table = InodeTable(array("Q", range(5_000_000, 5_000_000 + n)), array("Q", range(n)))
    assert len(table.keys) == 1 << 21  # 16 bytes a slot, two slots a socket: 32 MiB
    assert table.holders(5_000_000 + 12_345) == (12_345,)
    assert table.holders(4_999_999) == ()


# a process's sockets as the owner cache hands them: (pid, [(fd, inode)])
PROCESS = st.tuples(st.integers(1, 40), st.lists(st.tuples(st.integers(0, 60), INODES),
                                                 max_size=40, unique_by=lambda p: p[0]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), PROCESS), max_size=30))
def test_adds_and_discards_answer_as_a_table_built_at_once(steps):
    """Processes added and discarded in any order (the same inode under several
    holders, the odd ones, growth and shrinking past the load limits): the table
    holds what one built from the pairs still in it holds."""
    table = InodeTable([], [])
    live: dict[tuple[int, int], int] = {}  # (pid, fd) -> inode
    for adding, (pid, pairs) in steps:
        if adding:
            pairs = [(fd, i) for fd, i in pairs if (pid, fd) not in live]
            table.add(pid, [fd for fd, _i in pairs], [i for _fd, i in pairs])
            live.update(((pid, fd), i) for fd, i in pairs)
        else:  # the pairs of this pid that are live, and some that are not
            gone = [(fd, live.pop((pid, fd), i)) for fd, i in pairs]
            table.discard(pid, [fd for fd, _i in gone], [i for _fd, i in gone])
    want: dict[int, set[int]] = {}
    for (pid, fd), inode in live.items():
        want.setdefault(inode, set()).add(pid << 32 | fd)
    assert len(table) == len(want)
    assert sorted(table) == sorted(want)
    assert len(table.keys) >= 2 * (len(want) - len(table.odd))  # at most half full
    for inode, holders in want.items():
        assert sorted(table.holders(inode)) == sorted(holders)
    assert set(table.unfound()) == {i for i in want if not 0 < i < 2**64}
    table.reset_found()
    assert sorted(table.unfound()) == sorted(want)
    for absent in (1, 10_399, 2**63, 2**64 - 1):
        if absent not in want:
            assert table.holders(absent) == ()


def test_deleting_inside_runs_of_one_home_and_wrapping_past_the_end():
    """Clusters where each deletion must pull later entries back: inodes of two
    homes (one the last slot, so the run wraps to slot 0), deleted in every
    order of one cluster's members; the rest stay findable."""
    def home(inode: int) -> int:
        return ((inode * _GOLDEN) & _MASK64) >> 60  # a 16-slot table

    last = [i for i in range(1, 20_000) if home(i) == 15][:3]
    near = [i for i in range(1, 20_000) if home(i) == 0][:2]
    for order in permutations(last + near[:1]):
        table = InodeTable([], [])
        table.add(7, range(5), last + near)
        assert len(table.keys) == 16
        for n, inode in enumerate(order):
            table.discard(7, [(last + near).index(inode)], [inode])
            for fd, other in enumerate(last + near):
                assert table.holders(other) == (() if other in order[:n + 1] else (7 << 32 | fd,))
