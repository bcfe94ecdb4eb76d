"""The doctor's report: run every rule on a snapshot, order, focus, status, JSON.

`diagnose()` is pure (a Snapshot in, a Report out) so `fix`, `watch` and the
exporter reuse it on any snapshot. A live run reads and diagnoses in one place,
halfopen.doctor.run; snapshot files are halfopen.store; history files
watch.history_db.load_history.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from halfopen.records import record

from ..errors import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING
from ..model.finding import REPORT_ORDER, SEVERITY_RANK, Finding
from ..model.history import History
from ..model.nginx import NginxConf
from ..model.servers import ServerFacts
from ..model.snapshot import Snapshot
from ..model.trace import TraceFacts
from . import registry
from .common import attribute, identify
from .context import Context, Options
from .tally import Tally

SCHEMA = "halfopen.doctor/1"
EXIT_BY_STATUS = {"ok": EXIT_OK, "warning": EXIT_WARNING, "critical": EXIT_CRITICAL,
                  "unknown": EXIT_UNKNOWN}


@record
class Report:
    host: str
    kernel: str
    taken_at: str
    window_s: float
    status: str  # ok | warning | critical | unknown
    findings: list[Finding]
    checked: list[str]
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trace: TraceFacts | None = None  # doctor --trace

    @property
    def exit_code(self) -> int:
        return EXIT_BY_STATUS[self.status]

    def to_dict(self) -> dict[str, Any]:
        """The docs/design.md shape (schema halfopen.doctor/1)."""
        return {"schema": SCHEMA, "host": self.host, "kernel": self.kernel,
                "taken_at": self.taken_at, "window_s": self.window_s, "status": self.status,
                "findings": [f.to_dict() for f in self.findings], "checked": self.checked,
                **({"trace": self.trace.to_dict()} if self.trace is not None else {})}


def _focus(findings: list[Finding], options: Options) -> list[Finding]:
    """--pid/--port/--container: keep findings about that pid/port/container, and
    host-wide ones."""
    if options.pid is None and options.port is None and options.container is None:
        return findings
    kept = []
    for f in findings:
        pid, port, box = f.subject.pid, f.subject.port, f.subject.container
        if pid is None and port is None:
            kept.append(f)  # host- or namespace-wide: affects the focus too
        elif options.pid is not None and pid == options.pid or options.port is not None and port == options.port or (options.container is not None and box is not None
              and box.matches(options.container)):
            kept.append(f)
    return kept


def status_of(findings: list[Finding], checked: list[str]) -> str:
    if not checked:
        return "unknown"
    worst = max((SEVERITY_RANK[f.severity] for f in findings if f.severity != "unknown"),
                default=0)
    return {0: "ok", 1: "warning", 2: "critical"}[worst]


def new_tally(options: Options = Options()) -> Tally:
    """An empty Tally for these options, each rule's state in it (registry.rule_states):
    feed it the dump (collect.take.take's sink), then pass it to diagnose()."""
    return Tally(registry.rule_states(options))


def tally_of(snapshot: Snapshot, options: Options = Options()) -> Tally:
    """The Tally of a snapshot that holds its sockets (a file, --save-snapshot)."""
    return Tally.of(snapshot.sockets, registry.rule_states(options))


def diagnose(snapshot: Snapshot, options: Options = Options(), history: History | None = None,
             nginx: NginxConf | None = None, nginx_note: str = "",
             only: tuple[str, ...] = (), table: Tally | None = None,
             trace: TraceFacts | None = None, servers: ServerFacts | None = None) -> Report:
    """The report on a snapshot. `table`: its sockets, tallied while they were dumped
    (new_tally); without it the snapshot's socket list is tallied here. `trace`: a
    trace window's facts (doctor --trace), evidence for the rules. `servers`: haproxy's,
    redis's and httpd's timeouts from their files (collect.server_conf)."""
    if table is None:
        table = tally_of(snapshot, options)
    ctx = Context(snapshot, options, history, nginx, nginx_note, table, trace,
                  servers=servers)
    findings, checked, unknown = registry.run(ctx, only)
    attribute(findings, snapshot.processes)
    identify(findings, snapshot)
    findings = _focus(findings, options)
    findings.sort(key=lambda f: (REPORT_ORDER.get(f.severity, 9), registry.RULE_IDS.index(f.id)
                                 if f.id in registry.RULE_IDS else 99, f.title))
    hf = snapshot.host_facts
    window = hf.window_s if hf is not None else 0.0
    notes = list(snapshot.notes) + table.notes()
    if nginx_note:
        notes.append(nginx_note)
    if servers is not None:
        notes += servers.notes
    if trace is not None:
        notes += trace.notes + ([trace.note] if trace.note else [])
    return Report(snapshot.host, snapshot.kernel, snapshot.taken_at, window,
                  status_of(findings, checked), findings, checked, unknown, notes, trace)
