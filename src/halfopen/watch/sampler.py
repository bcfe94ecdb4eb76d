"""Take one Sample from the live kernel: sockets, owners, host facts, findings."""

from __future__ import annotations

import time

from halfopen.records import record

from ..collect import snapshot as snapshots
from ..collect import sockets as collector
from ..collect.netns import Namespace
from ..model.host import HostFacts
from . import hostfacts
from .ages import CloseWaitAges
from .findings import Doctor
from .sample import Sample, build


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

    def take(self) -> Sample:
        st = self.settings
        query = collector.Query(tcp_info=True, owners=True, namespaces=st.namespaces,
                                proc=st.proc)
        # The doctor needs the host collectors' facts; without it the tiny
        # readers in hostfacts are enough and cost less per scrape.
        now = self.clock()
        full = self.doctor.available and (self._host_at is None
                                          or now - self._host_at >= st.host_every_s)
        snap = snapshots.take(query, host=True, window=0) if full else snapshots.take(query)
        t = time.time()
        model = snap.host_facts
        if full and model is not None:
            self._host_facts, self._host_at = model, now
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
        sample.findings = self.doctor.findings(snap)
        if self.doctor.note:
            sample.notes.append(self.doctor.note)
        return sample
