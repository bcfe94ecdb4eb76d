"""diagnose.keepalive_target: every proposed keepalive beats its limit and is never
slower than what the socket already does (a property test over limits from 1 s to
5 days and random socket settings)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from halfopen.diagnose.keepalive_target import MAX_COUNT, MAX_IDLE, MAX_INTERVAL, Probing, wanted, within

FIVE_DAYS = 5 * 86400
limits = st.one_of(st.none(), st.floats(1, FIVE_DAYS, allow_nan=False), st.integers(1, FIVE_DAYS))
sockets = st.one_of(st.none(), st.builds(Probing, st.integers(1, MAX_IDLE), st.integers(1, MAX_INTERVAL),
                                         st.integers(1, MAX_COUNT)))


@settings(max_examples=5000, deadline=None)
@given(limits, sockets)
def test_a_proposal_beats_the_limit_and_the_socket(limit, current):
    got = wanted(limit, current)
    if got is None:
        # nothing proposed: no keepalive can beat the limit, or the socket already does
        target = within(limit) if limit is not None else wanted(None)
        assert target is None or (current is not None and current.detect_s <= target.detect_s)
        if target is None:
            assert limit is not None and limit <= 2.5
        return
    assert 1 <= got.idle <= MAX_IDLE and 1 <= got.interval <= MAX_INTERVAL and 1 <= got.count <= MAX_COUNT
    if limit is not None:
        assert got.idle < limit and got.detect_s < limit, (limit, got)  # first probe and the reset inside
    if current is not None:
        assert got.detect_s < current.detect_s, (current, got)  # never slower than today
        assert got.idle <= current.idle and got.interval <= current.interval and got.count <= current.count


def test_the_middleboxes_of_the_issue():
    assert wanted(8, Probing(7200, 75, 9)) == Probing(3, 1, 3)  # 6 s: inside an 8 s firewall
    assert wanted(8, Probing(9, 75, 9)) is not None  # a 9 s keepalive behind 8 s is flagged
    assert wanted(None, Probing(15, 5, 3)) is None  # redis's tcp-keepalive 15 is faster than 60/10x6
    assert wanted(8, Probing(15, 5, 3)) == Probing(3, 1, 3)
    assert wanted(350, Probing(7200, 75, 9)).detect_s < 350
    assert wanted(2, None) is None and wanted(1, Probing(7200, 75, 9)) is None
