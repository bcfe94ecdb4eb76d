"""The owner map's hash table against a dict, on the inodes a scan can hand it."""

from __future__ import annotations

from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from halfopen.collect.inode_table import InodeTable

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
