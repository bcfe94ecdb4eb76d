"""Take one Sample from the live kernel: sockets, owners, host facts, findings."""

from __future__ import annotations

import itertools
import os
import time

from halfopen.records import record

from ..collect import snapshot as snapshots
from ..collect import sockets as collector
from ..collect.netns import Namespace
from ..model.filter import Filter, StateIs
from ..model.finding import Finding
from ..model.host import HostFacts
from ..model.states import ALL_STATES, TcpState
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
    # ^ and the doctor: both need every socket kept at once (see Sampler)


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
        self._host_facts: HostFacts | None = None  # the last full run's HostFacts
        self._host_at: float | None = None
        self._findings: list[Finding] | None = None  # the last doctor run's findings
        self._findings_t: float | None = None  # its unix time

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
        snap = snapshots.take(query, host=True, window=0)
        t = time.time()
        model = snap.host_facts
        if model is not None:
            self._host_facts, self._host_at = model, now
        facts = hostfacts.from_model(model) if model is not None else hostfacts.read(st.proc)
        sample = build(t, snap.host, snap.sockets, snap.processes, facts, self._fd_limit(model),
                       snap.notes)
        self.ages.update(sample)
        self._findings = sample.findings = self.doctor.findings(snap)
        self._findings_t = t
        # counted from the end of the run: on a host where it takes longer than
        # host_every_s, every sample would otherwise be a full one
        self._host_at = self.clock()
        if self.doctor.note:
            sample.notes.append(self.doctor.note)
        return sample

    def _take_streamed(self) -> Sample:
        st = self.settings
        first = collector.collect(collector.Query(
            filter=_CLOSE_WAIT, tcp_info=True, owners=True, namespaces=st.namespaces,
            proc=st.proc))
        rest = collector.collect(collector.Query(
            filter=_NOT_CLOSE_WAIT, owners=True, namespaces=st.namespaces, proc=st.proc),
            first.owner_map)
        facts = hostfacts.read(st.proc)
        notes = list(dict.fromkeys(first.notes + rest.notes))
        processes = first.owner_map.processes if first.owner_map is not None else {}
        sample = build(time.time(), os.uname().nodename,
                       itertools.chain(first.sockets, rest.sockets), processes, facts,
                       self._fd_limit(self._host_facts), notes)
        self.ages.update(sample)
        if self.doctor.available:
            sample.findings = self._findings
            if self._findings_t is not None:
                sample.notes.append(f"findings from the doctor's run "
                                    f"{sample.t - self._findings_t:.0f} s ago (it runs every "
                                    f"{st.host_every_s:g} s)")
        if self.doctor.note:
            sample.notes.append(self.doctor.note)
        return sample

    def _fd_limit(self, model):
        proc = self.settings.proc

        def fd_limit(pid: int) -> int | None:
            lim = model.processes.get(pid) if model is not None else None
            if lim is not None:
                return None if lim.nofile_soft < 0 else lim.nofile_soft
            return hostfacts.fd_limit(pid, proc)
        return fd_limit
