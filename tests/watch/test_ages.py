"""CLOSE_WAIT first sightings in FinDates (watch/ages.py), checked against a dict
through rounds of churn: the earliest date kept, the cookies not seen dropped,
the table grown and shrunk in place."""

from __future__ import annotations

import random

from halfopen.watch.ages import CloseWaitAges, FinDates
from halfopen.watch.hostfacts import HostStats
from halfopen.watch.sample import CloseWaitSeen, ProcSample, Sample


def test_fin_dates_follow_a_dict_through_churn():
    rng = random.Random(25)
    dates, model = FinDates(), {}
    live: list[int] = []
    next_cookie = 1 << 40  # kernel cookies: a counter, consecutive per netns
    for rnd in range(60):
        # some go, some come (runs of consecutive cookies and scattered ones)
        live = [c for c in live if rng.random() > 0.3]
        grow = rng.choice((0, 50, 400, 3000)) if rnd < 40 else 0
        for _ in range(grow):
            next_cookie += rng.choice((1, 1, 1, 977))
            live.append(next_cookie)
        if rnd == 45:
            live = live[:20]  # most close at once: the table shrinks
        dates.reserve(len(live))
        fresh = {}
        for c in live:
            at = rng.uniform(0, 1000)
            kept = dates.mark(c, at)
            want = min(at, model.get(c, at))
            assert kept == want
            fresh[c] = want
        model = fresh
        dates.sweep()
        assert len(dates) == len(model)
        assert dict(dates.items()) == model
        assert 2 * len(dates) <= len(dates.keys)  # at most half full
        for c in live[:50]:
            assert dates.get(c) == model[c]
        assert dates.get(1) is None
    assert len(dates.keys) <= 1 << 10  # shrunk back after round 45


def test_close_wait_ages_only_grow():
    ages = CloseWaitAges()

    def sample(t: float, seen: dict[int, tuple[int, float | None]]) -> Sample:
        cw = CloseWaitSeen()
        for cookie, (pid, age) in seen.items():
            cw.add(cookie, pid, age)
        procs = {pid: ProcSample(pid, "srv", oldest_close_wait_s=None) for pid, _a in seen.values()}
        return Sample(t, "h", {}, procs, [], HostStats(), cw)

    s1 = sample(100.0, {7: (1, 30.0), 8: (2, 5.0)})
    ages.update(s1)
    assert s1.processes[1].oldest_close_wait_s == 30.0
    # an ACK reset last_ack_recv of cookie 7: the age still counts from the first date
    s2 = sample(110.0, {7: (1, 1.0)})
    ages.update(s2)
    assert s2.processes[1].oldest_close_wait_s == 40.0
    assert dict(ages.fin_at.items()) == {7: 70.0}  # cookie 8 is gone
    # cookie 8 again (not possible in the kernel: cookies are not reused) starts anew
    s3 = sample(120.0, {8: (2, 2.0)})
    ages.update(s3)
    assert s3.processes[2].oldest_close_wait_s == 2.0
