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
        snap = snapshots.take(query)
        t = time.time()
        facts_model = getattr(snap, "host_facts", None)
        facts = (hostfacts.from_model(facts_model) if facts_model is not None
                 else hostfacts.read(st.proc))
        sample = build(t, snap.host, snap.sockets, snap.processes, facts,
                       lambda pid: hostfacts.fd_limit(pid, st.proc), snap.notes)
        self.ages.update(sample)
        sample.findings = self.doctor.findings(snap)
        if self.doctor.note:
            sample.notes.append(self.doctor.note)
        return sample
