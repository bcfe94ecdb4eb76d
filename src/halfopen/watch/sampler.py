"""Take one Sample from the live kernel: sockets, owners, host facts, findings."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..collect import snapshot as snapshots
from ..collect import sockets as collector
from ..collect.netns import Namespace
from . import hostfacts
from .ages import CloseWaitAges
from .findings import Doctor
from .sample import Sample, build


@dataclass(frozen=True, slots=True)
class Settings:
    namespaces: tuple[Namespace, ...] = ()
    proc: str = "/proc"
    doctor: bool = True


class Sampler:
    """Reusable: holds the doctor (imported once) between samples."""

    def __init__(self, settings: Settings = Settings()) -> None:
        self.settings = settings
        self.doctor = Doctor(settings.doctor)
        self.ages = CloseWaitAges()

    def take(self) -> Sample:
        st = self.settings
        query = collector.Query(tcp_info=True, owners=True, namespaces=st.namespaces,
                                proc=st.proc)
        # The doctor needs the host collectors' facts; without it the tiny
        # readers in hostfacts are enough and cost less per scrape.
        snap = snapshots.take(query, host=True, window=0) if self.doctor.available \
            else snapshots.take(query)
        t = time.time()
        model = snap.host_facts
        facts = hostfacts.from_model(model) if model is not None else hostfacts.read(st.proc)

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
