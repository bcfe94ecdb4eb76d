"""The doctor's report: run every rule on a snapshot, order, focus, status, JSON.

`diagnose()` is pure (a Snapshot in, a Report out) so `fix`, `watch` and the
exporter reuse it on any snapshot. `take_live()` is the one place that reads
the system for the doctor: a snapshot with host facts, and nginx's
configuration when nginx runs.
"""

from __future__ import annotations

import json
from dataclasses import field
from halfopen.records import record
from typing import Any

from ..errors import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING, UsageError
from ..model.finding import SEVERITY_RANK, Finding
from ..model.nginx import NginxConf
from ..model.snapshot import Snapshot, read_document
from . import registry
from .context import Context, Options
from .history import History

SCHEMA = "halfopen.doctor/1"
# Worst first: critical, warning, unknown, info (unknown is "could not check", not worse
# than a known critical problem).
ORDER = {"critical": 0, "warning": 1, "unknown": 2, "info": 3, "ok": 4}
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

    @property
    def exit_code(self) -> int:
        return EXIT_BY_STATUS[self.status]

    def to_dict(self) -> dict[str, Any]:
        """The DESIGN.md shape (schema halfopen.doctor/1)."""
        return {"schema": SCHEMA, "host": self.host, "kernel": self.kernel,
                "taken_at": self.taken_at, "window_s": self.window_s, "status": self.status,
                "findings": [f.to_dict() for f in self.findings], "checked": self.checked}


def _focus(findings: list[Finding], options: Options) -> list[Finding]:
    """--pid/--port: keep findings about that pid/port, and host-wide ones."""
    if options.pid is None and options.port is None:
        return findings
    kept = []
    for f in findings:
        pid, port = f.subject.get("pid"), f.subject.get("port")
        if pid is None and port is None:
            kept.append(f)  # host- or namespace-wide: affects the focus too
        elif options.pid is not None and pid == options.pid:
            kept.append(f)
        elif options.port is not None and port == options.port:
            kept.append(f)
    return kept


def status_of(findings: list[Finding], checked: list[str]) -> str:
    if not checked:
        return "unknown"
    worst = max((SEVERITY_RANK[f.severity] for f in findings if f.severity != "unknown"),
                default=0)
    return {0: "ok", 1: "warning", 2: "critical"}[worst]


def diagnose(snapshot: Snapshot, options: Options = Options(), history: History | None = None,
             nginx: NginxConf | None = None, nginx_note: str = "",
             only: tuple[str, ...] = ()) -> Report:
    ctx = Context(snapshot, options, history, nginx, nginx_note)
    findings, checked, unknown = registry.run(ctx, only)
    findings = _focus(findings, options)
    findings.sort(key=lambda f: (ORDER.get(f.severity, 9), registry.RULE_IDS.index(f.id)
                                 if f.id in registry.RULE_IDS else 99, f.title))
    hf = snapshot.host_facts
    window = hf.window_s if hf is not None else 0.0
    notes = list(snapshot.notes)
    if nginx_note:
        notes.append(nginx_note)
    return Report(snapshot.host, snapshot.kernel, snapshot.taken_at, window,
                  status_of(findings, checked), findings, checked, unknown, notes)


# ---------------------------------------------------------------- I/O: live and saved

def take_live(namespaces: tuple = (), window_s: float = 3.0, read_nginx: bool = True
              ) -> tuple[Snapshot, NginxConf | None, str]:
    """Read the system: every TCP socket with owners and tcp_info, host facts, nginx."""
    from ..collect import nginx_conf, snapshot as snap_mod, sockets  # noqa: PLC0415
    query = sockets.Query(tcp_info=True, owners=True, namespaces=namespaces)
    snap = snap_mod.take_full(query, window=window_s)
    nginx, note = (nginx_conf.read(snap) if read_nginx else (None, ""))
    return snap, nginx, note


def save(path: str, snapshot: Snapshot, nginx: NginxConf | None) -> None:
    """A snapshot file (halfopen.snapshot/1) with the doctor's extra facts under "doctor"."""
    data = snapshot.to_dict()
    data["doctor"] = {"nginx": nginx.to_dict() if nginx is not None else None}
    with open(path, "w") as f:
        json.dump(data, f)


def load(path: str) -> tuple[Snapshot, NginxConf | None]:
    """A saved snapshot (checked against its schema) and the nginx facts saved with it."""
    doc = read_document(path)
    try:
        snap = Snapshot.from_dict(doc)  # checks the whole document, "doctor" too
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    extra = (doc.get("doctor") or {}).get("nginx")
    return snap, (NginxConf.from_dict(extra) if extra else None)


def load_history(path: str, pids: list[int], span_s: float = 3600.0) -> History:
    """Per-process close_wait and fd series from a `halfopen watch --record` file."""
    from ..watch import history as watch_history  # noqa: PLC0415
    hist = History(source=path)
    with watch_history.closing_reader(path) as db:
        for pid in pids:
            for metric in ("close_wait", "fds"):
                for t, v in watch_history.proc_points(db, pid, metric, span_s):
                    hist.add(pid, metric, t, v)
    return hist
