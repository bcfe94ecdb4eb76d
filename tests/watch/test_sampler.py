"""The sampler runs the host collectors' full pass at most every host_every_s."""

from __future__ import annotations

from halfopen.model.snapshot import Snapshot
from halfopen.watch import sampler as sampler_mod
from halfopen.watch.findings import Doctor
from halfopen.watch.sampler import Sampler, Settings


class FakeFacts:
    processes: dict = {}
    unavailable: dict = {}


def test_full_host_run_throttled(monkeypatch):
    calls = []

    def take(query, host=False, window=3.0, timings=None):
        calls.append(host)
        snap = Snapshot(host="h", kernel="k", taken_at="t", source="sock_diag",
                        namespaces=[], sockets=[], processes={}, notes=[])
        snap.host_facts = FakeFacts() if host else None
        return snap

    seen = []
    monkeypatch.setattr(sampler_mod.snapshots, "take", take)
    monkeypatch.setattr(sampler_mod.hostfacts, "from_model", lambda m: sampler_mod.hostfacts.HostStats())
    now = [0.0]
    s = Sampler(Settings(host_every_s=30), clock=lambda: now[0])
    s.doctor = Doctor(run=lambda snap: seen.append(snap.host_facts) or [])
    for t in (0, 1, 29, 30, 31, 61):
        now[0] = t
        s.take()
    assert calls == [True, False, False, True, False, True]
    assert all(f is not None for f in seen)  # the doctor always gets host facts
    assert seen[1] is seen[0] and seen[3] is not seen[0]


def test_no_doctor_never_runs_host_collectors(monkeypatch):
    calls = []

    def take(query, host=False, window=3.0, timings=None):
        calls.append(host)
        return Snapshot(host="h", kernel="k", taken_at="t", source="sock_diag",
                        namespaces=[], sockets=[], processes={}, notes=[])

    monkeypatch.setattr(sampler_mod.snapshots, "take", take)
    s = Sampler(Settings(doctor=False))
    s.take()
    s.take()
    assert calls == [False, False]
