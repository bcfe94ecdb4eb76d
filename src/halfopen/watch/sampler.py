"""Take one Sample from the live kernel: sockets, owners, host facts, findings."""

from __future__ import annotations

import itertools
import os
import time

from halfopen.records import record

from ..collect import sockets as collector
from ..collect import state_tally, take
from ..collect.netns import Namespace
from ..collect.owner_cache import OwnerCache
from ..collect.owners import denied_note
from ..collect.unit import read_unit
from ..model.filter import Filter, StateIs
from ..model.finding import Finding
from ..model.host import SOURCES, HostFacts
from ..model.process import Process
from ..model.socket import Socket
from ..model.states import ALL_STATES, TcpState
from . import hostfacts, process_labels
from .ages import CloseWaitAges
from .findings import Doctor
from .sample import CollectorRun, Fold, Sample


@record(frozen=True)
class Settings:
    namespaces: tuple[Namespace, ...] = ()
    proc: str = "/proc"
    doctor: bool = True
    host_every_s: float = 30.0  # the host collectors' full run (stale fds, limits, kernel log)
    # ^ and the doctor: both need every socket kept at once (see Sampler)
    owners_full_every_s: float = 120.0  # the owner cache's full fd rescan (collect.owner_cache)
    tally: bool = True  # streamed samples counted without Socket records (collect.state_tally);
    # ^ False: every socket decoded and folded (the reference tests/watch/test_tally.py compares)


# Only CLOSE_WAIT sockets need tcp_info in a streamed sample (their age, see
# sample.py): the rest are dumped without INET_DIAG_INFO, a third of the bytes.
_CLOSE_WAIT = Filter(StateIs(1 << int(TcpState.CLOSE_WAIT)), "state close-wait")
_NOT_CLOSE_WAIT = Filter(StateIs(ALL_STATES & ~(1 << int(TcpState.CLOSE_WAIT))),
                         "exclude close-wait")


class Sampler:
    """Reusable: holds the doctor (imported once) between samples.

    The doctor needs the host collectors' facts, whose full run (every
    process's fds against every namespace's socket tables for stale fds,
    limits, the kernel log) costs several times the socket dump on a busy
    host. It runs at most every `host_every_s` seconds; the samples between
    read the sockets fresh and hand the doctor the last host facts (at most
    that old), while the exporter's and the watch's own host figures come
    from the tiny readers in hostfacts, fresh every sample.

    The doctor runs on the same samples as the host pass: its rules take a
    Snapshot, every socket kept at once (about 2 KiB each). The samples
    between stream the sockets into the Sample (sample.build) without
    keeping them, read tcp_info only for CLOSE_WAIT, and carry the last
    findings with a note saying how old they are. So a scrape's cost
    between doctor runs is one fd scan and one dump, and its memory does not
    hold the sockets.
    """

    def __init__(self, settings: Settings = Settings(), clock=time.monotonic) -> None:
        self.settings = settings
        self.doctor = Doctor(settings.doctor)
        self.ages = CloseWaitAges()
        self.clock = clock
        self.owners = OwnerCache(settings.proc, settings.owners_full_every_s, clock)
        self._host_facts: HostFacts | None = None  # the last full run's HostFacts
        self._host_at: float | None = None
        self._host_run: CollectorRun | None = None  # how the last full run went
        self._units: dict[tuple[int, str], str] = {}  # (pid, comm) -> systemd unit
        self._findings: list[Finding] | None = None  # the last doctor run's findings
        self._findings_t: float | None = None  # its unix time
        self._doctor_s: float | None = None  # how long it took

    def take(self) -> Sample:
        st = self.settings
        # The doctor needs the host collectors' facts; without it the tiny
        # readers in hostfacts are enough and cost less per scrape.
        now = self.clock()
        full = self.doctor.available and (self._host_at is None
                                          or now - self._host_at >= st.host_every_s)
        if full:
            return self._take_full(now)
        return self._take_streamed()

    def _take_full(self, now: float) -> Sample:
        st = self.settings
        query = collector.Query(tcp_info=True, owners=True, namespaces=st.namespaces,
                                proc=st.proc)
        timings: dict[str, float] = {}
        # one pass: each socket is folded into the sample and tallied for the doctor
        # as the dump streams; none is kept (diagnose.tally)
        fold, table = Fold(), self.doctor.tally()
        if table is None:
            sink = fold.add
        else:
            def sink(s: Socket) -> None:
                fold.add(s)
                table.add(s)
        # the host run's fd scan is the owner cache's full one: the streamed
        # samples after it start from it (no second readlink pass)
        snap = take.take(query, host=True, window=0, timings=timings, sink=sink,
                              cache=self.owners)
        t = time.time()
        model = snap.host_facts
        if model is not None:
            self._host_facts, self._host_at = model, now
            self._host_run = CollectorRun(True, timings.get("host"))
        facts = hostfacts.from_model(model) if model is not None else hostfacts.read(st.proc)
        sample = fold.sample(t, snap.host, snap.processes, facts, self._fd_limit(model),
                             snap.notes)
        self.ages.update(sample)
        self.owners.matched({pid: sum(p.states.values()) for pid, p in sample.processes.items()})
        start = time.perf_counter()
        self._findings = sample.findings = self.doctor.findings(snap, table)
        self._findings_t = t
        self._doctor_s = time.perf_counter() - start
        # counted from the end of the run: on a host where it takes longer than
        # host_every_s, every sample would otherwise be a full one
        self._host_at = self.clock()
        if self.doctor.note:
            sample.notes.append(self.doctor.note)
        sample.identities = self._identities(sample, snap.processes)
        sample.collectors = self._collectors(snap.source, timings.get("sockets"), sample)
        return sample

    def _take_streamed(self) -> Sample:
        st = self.settings
        start = time.perf_counter()
        # owners from the cache: a listing per process, links read only for new
        # fds (collect.owner_cache); matched to the dump as it streams
        owner_map = self.owners.refresh()
        processes = owner_map.processes  # refilled in place if the cache reads again
        opened = collector.open_sock_diag(collector.Query(namespaces=st.namespaces,
                                                          proc=st.proc)) if st.tally else None
        if opened is not None:
            readers, notes = opened
            try:
                tally = state_tally.take(readers, self.owners)
            finally:
                for _ns, reader in readers:
                    reader.close()
            source = "sock_diag"
            owners = self.owners.owner_map.owners if self.owners.owner_map else owner_map.owners
            fold = Fold.of_tally(tally, owners.comm)
        else:  # every socket decoded (or sock_diag unavailable: /proc/net/tcp)
            first = collector.collect(collector.Query(
                filter=_CLOSE_WAIT, tcp_info=True, namespaces=st.namespaces, proc=st.proc))
            rest = collector.collect(collector.Query(
                filter=_NOT_CLOSE_WAIT, namespaces=st.namespaces, proc=st.proc))
            notes = first.notes + rest.notes
            source = first.source
            fold = Fold()
            for s in self.owners.attach(itertools.chain(first.sockets, rest.sockets)):
                fold.add(s)
        facts = hostfacts.read(st.proc)
        notes = list(dict.fromkeys(notes))
        if owner_map.denied:
            notes.append(denied_note(owner_map.denied))
        sample = fold.sample(time.time(), os.uname().nodename, processes, facts,
                             self._fd_limit(self._host_facts), notes)
        dumped = time.perf_counter() - start
        self.ages.update(sample)
        if self.doctor.available:
            sample.findings = self._findings
            if self._findings_t is not None:
                sample.notes.append(f"findings from the doctor's run "
                                    f"{sample.t - self._findings_t:.0f} s ago (it runs every "
                                    f"{st.host_every_s:g} s)")
        if self.doctor.note:
            sample.notes.append(self.doctor.note)
        sample.identities = self._identities(sample, processes)
        sample.collectors = self._collectors(source, dumped, sample)
        return sample

    def _fd_limit(self, model: HostFacts | None):
        proc = self.settings.proc

        def fd_limit(pid: int) -> int | None:
            lim = model.processes.get(pid) if model is not None else None
            if lim is not None:
                return None if lim.nofile_soft < 0 else lim.nofile_soft
            return hostfacts.fd_limit(pid, proc)
        return fd_limit

    def _identities(self, sample: Sample, processes: dict[int, Process]
                    ) -> dict[int, process_labels.Identity]:
        """What survives a restart, for every TCP socket owner and every pid a finding
        names: comm, the systemd unit, and the container when the owner record carries
        one. The unit is read from /proc/PID/cgroup once per (pid, comm) while the pid
        keeps appearing (a read costs 0.1 ms on a loaded host; a process that exec()s
        or a reused pid has a new comm, so it is read again)."""
        comms = {pid: p.comm for pid, p in sample.processes.items()}
        for f in sample.findings or ():
            pid = f.subject.pid
            if pid is not None:
                comms.setdefault(pid, f.subject.comm or "")
        units = {}
        for key in comms.items():
            cached = self._units.get(key)
            units[key] = cached if cached is not None else read_unit(key[0], self.settings.proc)
        self._units = units  # forget the pids that are gone
        out = {}
        for pid, comm in comms.items():
            owner = sample.processes.get(pid) or processes.get(pid)
            out[pid] = process_labels.of(comm, units[pid, comm],
                                   owner.container if owner is not None else None)
        return out

    def _collectors(self, source: str, sockets_s: float | None,
                    sample: Sample) -> dict[str, CollectorRun]:
        """sockets (0 when the dump fell back to /proc/net/tcp: no tcp_info, no ages),
        the host run and its sources as of its last run, the doctor (its last run)."""
        out = {"sockets": CollectorRun(source == "sock_diag", sockets_s)}
        if self._host_run is not None and self._host_facts is not None:
            out["host"] = self._host_run
            failed = {key.partition("@")[0] for key in self._host_facts.unavailable}
            for src in SOURCES:
                out[src] = CollectorRun(src not in failed)
        if self.doctor.available:
            out["doctor"] = CollectorRun(sample.findings is not None, self._doctor_s)
        return out

