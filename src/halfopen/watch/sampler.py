"""Take one Sample from the live kernel: sockets, owners, host facts, findings."""

from __future__ import annotations

import time

from halfopen.records import record

from ..collect import snapshot as snapshots
from ..collect import sockets as collector
from ..collect.netns import Namespace
from ..collect.unit import read_unit
from ..model.host import SOURCES, HostFacts
from ..model.process import Process
from . import hostfacts, identity
from .ages import CloseWaitAges
from .findings import Doctor
from .sample import CollectorRun, Sample, build


@record(frozen=True)
class Settings:
    namespaces: tuple[Namespace, ...] = ()
    proc: str = "/proc"
    doctor: bool = True
    host_every_s: float = 30.0  # the host collectors' full run (stale fds, limits, kernel log)


class Sampler:
    """Reusable: holds the doctor (imported once) between samples.

    The doctor needs the host collectors' facts, whose full run (every
    process's fds against every namespace's socket tables for stale fds,
    limits, the kernel log) costs several times the socket dump on a busy
    host. It runs at most every `host_every_s` seconds; the samples between
    read the sockets fresh and hand the doctor the last host facts (at most
    that old), while the exporter's and the watch's own host figures come
    from the tiny readers in hostfacts, fresh every sample.
    """

    def __init__(self, settings: Settings = Settings(), clock=time.monotonic) -> None:
        self.settings = settings
        self.doctor = Doctor(settings.doctor)
        self.ages = CloseWaitAges()
        self.clock = clock
        self._host_facts: HostFacts | None = None  # the last full run's HostFacts
        self._host_at: float | None = None
        self._host_run: CollectorRun | None = None  # how the last full run went
        self._units: dict[tuple[int, str], str] = {}  # (pid, comm) -> systemd unit

    def take(self) -> Sample:
        st = self.settings
        query = collector.Query(tcp_info=True, owners=True, namespaces=st.namespaces,
                                proc=st.proc)
        # The doctor needs the host collectors' facts; without it the tiny
        # readers in hostfacts are enough and cost less per scrape.
        now = self.clock()
        full = self.doctor.available and (self._host_at is None
                                          or now - self._host_at >= st.host_every_s)
        timings: dict[str, float] = {}
        snap = snapshots.take(query, host=full, window=0, timings=timings)
        t = time.time()
        model = snap.host_facts
        if full and model is not None:
            self._host_facts, self._host_at = model, now
            self._host_run = CollectorRun(True, timings.get("host"))
        facts = hostfacts.from_model(model) if model is not None else hostfacts.read(st.proc)
        if not full and self.doctor.available:
            snap.host_facts = model = self._host_facts  # the doctor's host view, not ours

        def fd_limit(pid: int) -> int | None:
            lim = model.processes.get(pid) if model is not None else None
            if lim is not None:
                return None if lim.nofile_soft < 0 else lim.nofile_soft
            return hostfacts.fd_limit(pid, st.proc)

        sample = build(t, snap.host, snap.sockets, snap.processes, facts, fd_limit, snap.notes)
        self.ages.update(sample)
        start = time.perf_counter()
        sample.findings = self.doctor.findings(snap)
        doctor_s = time.perf_counter() - start
        if self.doctor.note:
            sample.notes.append(self.doctor.note)
        sample.identities = self._identities(sample, snap.processes)
        sample.collectors = self._collectors(snap.source, timings, doctor_s, sample)
        return sample

    def _identities(self, sample: Sample, processes: dict[int, Process]
                    ) -> dict[int, identity.Identity]:
        """What survives a restart, for every TCP socket owner and every pid a finding
        names: comm, the systemd unit, and the container when the owner record carries
        one. The unit is read from /proc/PID/cgroup once per (pid, comm) while the pid
        keeps appearing (a read costs 0.1 ms on a loaded host; a process that exec()s
        or a reused pid has a new comm, so it is read again)."""
        comms = {pid: p.comm for pid, p in sample.processes.items()}
        for f in sample.findings or ():
            pid = f.subject.get("pid")
            if isinstance(pid, int):
                comms.setdefault(pid, str(f.subject.get("comm", "")))
        units = {}
        for key in comms.items():
            cached = self._units.get(key)
            units[key] = cached if cached is not None else read_unit(key[0], self.settings.proc)
        self._units = units  # forget the pids that are gone
        out = {}
        for pid, comm in comms.items():
            owner = sample.processes.get(pid) or processes.get(pid)
            out[pid] = identity.of(comm, units[pid, comm],
                                   owner.container if owner is not None else None)
        return out

    def _collectors(self, source: str, timings: dict[str, float], doctor_s: float,
                    sample: Sample) -> dict[str, CollectorRun]:
        """sockets (0 when the dump fell back to /proc/net/tcp: no tcp_info, no ages),
        the host run and its sources as of its last run, the doctor."""
        out = {"sockets": CollectorRun(source == "sock_diag", timings.get("sockets"))}
        if self._host_run is not None and self._host_facts is not None:
            out["host"] = self._host_run
            failed = {key.partition("@")[0] for key in self._host_facts.unavailable}
            for src in SOURCES:
                out[src] = CollectorRun(src not in failed)
        if self.doctor.available:
            out["doctor"] = CollectorRun(sample.findings is not None, doctor_s)
        return out

