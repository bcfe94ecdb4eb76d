"""The sampler: the host collectors' full pass and the doctor at most every
host_every_s; the samples between streamed, with the same counts."""

from __future__ import annotations

import pytest

from halfopen.model.snapshot import Snapshot
from halfopen.watch import sampler as sampler_mod
from halfopen.watch.findings import Doctor
from halfopen.watch.sample import CloseWaitSeen
from halfopen.watch.sampler import Sampler, Settings

from .samples import finding


class FakeFacts:
    processes: dict = {}
    unavailable: dict = {}


def test_full_host_run_and_doctor_throttled(monkeypatch):
    calls = []
    real_take = sampler_mod.take.take

    def take(query, host=False, window=3.0, timings=None, sink=None, cache=None):
        calls.append(host)
        snap = real_take(query, sink=sink)  # the real sockets, without the slow host pass
        snap.host_facts = FakeFacts() if host else None
        return snap

    seen = []
    monkeypatch.setattr(sampler_mod.take, "take", take)
    monkeypatch.setattr(sampler_mod.hostfacts, "from_model", lambda m: sampler_mod.hostfacts.HostStats())
    now = [0.0]
    s = Sampler(Settings(host_every_s=30), clock=lambda: now[0])
    findings = [[finding(1)], [finding(2)]]
    s.doctor = Doctor(run=lambda snap, _table: seen.append(snap.host_facts) or findings[len(seen) - 1])
    samples = []
    for t in (0, 1, 29, 30, 31):
        now[0] = t
        samples.append(s.take())
    assert calls == [True, True]  # only the full samples keep a Snapshot
    assert len(seen) == 2 and all(f is not None for f in seen)  # with host facts
    got = [[f.subject.pid for f in x.findings] for x in samples]
    # the samples between carry the last findings, saying how old they are
    assert got == [[1], [1], [1], [2], [2]]
    assert any("findings from the doctor's run" in n for n in samples[2].notes)


def test_no_doctor_never_keeps_a_snapshot(monkeypatch):
    calls = []

    def take(query, host=False, window=3.0, timings=None):
        calls.append(host)
        return Snapshot(host="h", kernel="k", taken_at="t", source="sock_diag",
                        namespaces=[], sockets=[], processes={}, notes=[])

    monkeypatch.setattr(sampler_mod.take, "take", take)
    s = Sampler(Settings(doctor=False))
    a, b = s.take(), s.take()
    assert calls == []
    assert a.findings is None and b.findings is None
    assert a.states  # counted from the live sockets all the same


def test_streamed_sample_counts_what_the_full_one_does(start_leaker):
    """A real CLOSE_WAIT leaker: the streamed sample (two dumps, tcp_info only
    for CLOSE_WAIT, nothing kept) gives its process the same counts and an
    age, as the full one (one dump, kept for the doctor) does."""
    leak = start_leaker(initial=23)
    s = Sampler(Settings(host_every_s=3600))
    full = s.take()
    streamed = s.take()
    assert full.findings is not None and streamed.findings is full.findings
    for sample in (full, streamed):
        p = sample.processes[leak.pid]
        assert p.comm == "leaker" and p.close_wait == 23, p
        assert p.oldest_close_wait_s is not None and p.oldest_close_wait_s >= 0
        assert p.fds is not None and p.fd_limit is not None
        assert [li.port for li in sample.listeners if li.pid == leak.pid] == [leak.port]
        cookies = [c for c, (pid, _age) in sample.close_wait.items() if pid == leak.pid]
        assert len(cookies) == 23
    assert ({c for c, (pid, _a) in full.close_wait.items() if pid == leak.pid}
            == {c for c, (pid, _a) in streamed.close_wait.items() if pid == leak.pid})
    assert full.processes[leak.pid].states == streamed.processes[leak.pid].states


def test_the_close_wait_map_reads_back_what_it_was_given():
    seen = CloseWaitSeen()
    for cookie, pid, age in ((7, 100, 12.5), (2**63 + 5, 0, None), (9, 101, 0.0)):
        seen.add(cookie, pid, age)
    assert list(seen.items()) == [(7, (100, 12.5)), (2**63 + 5, (0, None)), (9, (101, 0.0))]
    assert len(seen) == 3 and list(seen) == [7, 2**63 + 5, 9] and seen[9] == (101, 0.0)
    with pytest.raises(KeyError):
        seen[8]
