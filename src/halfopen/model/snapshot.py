"""A Snapshot: the kernel's TCP table and its owners at one moment.

Later pieces (doctor, watch) consume it; it turns into JSON and back (files:
halfopen.store), so rules can run on recorded data as well as on a live kernel.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from halfopen.records import record

from ..errors import UsageError
from .host import HostFacts
from .process import Process
from .socket import Socket

SCHEMA = "halfopen.snapshot/1"


@record
class Snapshot:
    host: str
    kernel: str
    taken_at: str  # ISO-8601, UTC
    source: str  # "sock_diag" or "procfs"
    namespaces: list[str]
    sockets: list[Socket]
    processes: dict[int, Process] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Host collectors' facts (counters, limits, conntrack, kernel log); None
    # when not collected. Named host_facts because `host` is the host name.
    host_facts: HostFacts | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "host": self.host, "kernel": self.kernel,
            "taken_at": self.taken_at, "source": self.source,
            "namespaces": self.namespaces, "notes": self.notes,
            "processes": [p.to_dict() for p in self.processes.values()],
            "sockets": [s.to_dict() for s in self.sockets],
            "host_facts": None if self.host_facts is None else self.host_facts.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        if d.get("schema") != SCHEMA:
            raise UsageError(f"not a halfopen snapshot (schema {d.get('schema')!r}, "
                             f"want {SCHEMA!r})")
        return cls(
            host=d["host"], kernel=d["kernel"], taken_at=d["taken_at"], source=d["source"],
            namespaces=list(d["namespaces"]), notes=list(d.get("notes", [])),
            processes={p["pid"]: Process.from_dict(p) for p in d.get("processes", [])},
            sockets=[Socket.from_dict(s) for s in d["sockets"]],
            host_facts=(HostFacts.from_dict(d["host_facts"])
                        if d.get("host_facts") is not None else None),
        )
