"""A Snapshot: the kernel's TCP table and its owners at one moment.

Later pieces (doctor, watch) consume it; it turns into JSON and back (files:
halfopen.store), so rules can run on recorded data as well as on a live kernel.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import field
from typing import Any

from halfopen.records import record

from ..errors import UsageError
from . import file_text, schema
from .host import HostFacts, NamespaceHost, ProcessLimits
from .nginx import NginxConf
from .process import Process
from .servers import ServerFacts
from .socket import DIRECTIONS, TIMER_NAMES, Socket
from .states import STATE_BY_KEY

SCHEMA = "halfopen.snapshot/1"
MAX_BYTES = 256 * file_text.MiB  # a file's cap: 100,000 sockets with tcp_info are about 60 MiB


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
        """Build from a document; UsageError naming the first wrong place otherwise.

        The whole document is checked against its schema first (document_shape),
        so no record, and no rule, is built from a value of the wrong type.
        """
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise UsageError(f"not a halfopen snapshot (schema {got!r}, want {SCHEMA!r})")
        try:
            schema.check(d, document_shape())
        except schema.SchemaError as exc:
            raise UsageError(f"not a valid halfopen snapshot: {exc}") from None
        return cls(
            host=d["host"], kernel=d["kernel"], taken_at=d["taken_at"], source=d["source"],
            namespaces=list(d["namespaces"]), notes=list(d.get("notes", [])),
            processes={p["pid"]: Process.from_dict(p) for p in d.get("processes", [])},
            sockets=[Socket.from_dict(s) for s in d["sockets"]],
            host_facts=(HostFacts.from_dict(d["host_facts"])
                        if d.get("host_facts") is not None else None),
        )


@functools.cache
def document_shape() -> schema.Obj:
    """halfopen.snapshot/1: Snapshot.to_dict's form (plus the doctor's "doctor" key)."""
    sock = schema.of_record(Socket, overrides={
        "family": schema.OneOf((4, 6)), "state": schema.OneOf(STATE_BY_KEY),
        "timer": schema.OneOf(TIMER_NAMES.values()),
        "direction": schema.Opt(schema.OneOf(DIRECTIONS))})
    # the rules date ages from taken_at (diagnose/context.py): it must parse
    when = schema.Where(schema.STR, lambda t: datetime.datetime.fromisoformat(t).timestamp(),
                        "an ISO-8601 time (2026-12-01T20:15:00+00:00)")
    host = schema.of_record(HostFacts, overrides={
        "taken_at": when,
        "namespaces": schema.List(schema.of_record(NamespaceHost)),
        "processes": schema.List(schema.of_record(ProcessLimits))})
    doctor = schema.Obj({"nginx": schema.Opt(schema.of_record(NginxConf)),
                         "servers": schema.Opt(schema.of_record(ServerFacts))}, (), "doctor")
    return schema.of_record(Snapshot, overrides={
        "taken_at": when,
        "processes": schema.List(schema.of_record(Process)),
        "sockets": schema.List(sock), "host_facts": schema.Opt(host)},
        added={"schema": schema.OneOf((SCHEMA,)), "doctor": schema.Opt(doctor)})
