"""A Finding: one diagnosed problem, its evidence, its fixes and why.

The JSON shape is the contract in docs/design.md ("Findings (doctor --json)").
`Fix.params` carries what `halfopen fix` needs to apply an automatic fix:

    action "sysctl"    params {"key": "net.ipv4.tcp_keepalive_time", "value": "300", "netns": "host"}
    action "prlimit"   params {"pid": 812, "resource": "nofile", "soft": 65536}
    action "keepalive" params {"pid": 812, "idle": 60, "interval": 10, "count": 6}
    action "kill"      params {"filter": "state close-wait pid 812"}
    action "config"    params {"file": "/etc/nginx/nginx.conf", "snippet": "..."}  (never automatic)
    action "code"      params {}                                                   (never automatic)
"""

from __future__ import annotations

from dataclasses import asdict, field
from typing import Any

from halfopen.records import record

from . import file_text, schema
from .subject import Subject

# The one severity table, in the order a report lists findings: a known critical
# problem before a check that could not run ("unknown" is "could not check", not
# worse than critical), with how bad each is for a status or a worst-of; unknown
# has no rank there (a status leaves it out, a worst-of puts it above critical).
_SEVERITY = {"critical": 2, "warning": 1, "unknown": None, "info": 0, "ok": 0}
SEVERITIES = ("ok", "info", "warning", "critical", "unknown")
SEVERITY_RANK = {k: v for k, v in _SEVERITY.items() if v is not None}
UNKNOWN_RANK = 3  # above critical, for a worst-of
REPORT_ORDER = {k: i for i, k in enumerate(_SEVERITY)}


@record
class Evidence:
    what: str  # snake_case name of the measured value
    value: Any
    source: str  # where it was read: "sock_diag", "/proc/net/netstat", "tcp_info" ...
    note: str = ""


@record
class Fix:
    action: str
    command: str  # exact command or snippet a person could run or paste
    automatic: bool  # True: `halfopen fix` can apply it
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@record
class Finding:
    id: str  # a rule id from docs/design.md
    severity: str  # "info", "warning", "critical", "unknown"
    cause: str
    title: str
    subject: Subject = field(default_factory=Subject)  # netns, pid, comm, port ...
    evidence: list[Evidence] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["subject"] = self.subject.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(
            id=d["id"], severity=d["severity"], cause=d["cause"], title=d["title"],
            subject=Subject.from_dict(d.get("subject", {})),
            evidence=[Evidence(**e) for e in d.get("evidence", [])],
            fixes=[Fix(**f) for f in d.get("fixes", [])],
            why=d.get("why", ""),
        )


MAX_BYTES = 64 * file_text.MiB  # a findings file's cap (store.load_findings)


def findings_shape() -> schema.Shape:
    """A list of Finding.to_dict()s, with the params `halfopen fix` acts on typed.

    Fix.params is free-form in the record (each action has its own), but fix
    turns these keys into pids, limits and sysctl values: each must have the
    type the module docstring names.
    """
    count, text = schema.Opt(schema.INT), schema.Opt(schema.STR)
    params = schema.Obj(
        {**{k: count for k in ("pid", "soft", "hard", "idle", "interval", "count",
                               "user_timeout", "user_timeout_ms", "start_time")},
         **{k: text for k in ("key", "file", "snippet", "filter", "resource", "netns", "comm")}},
        (), "params", rest=schema.JSON)
    fix = schema.of_record(Fix, overrides={"params": params})
    # typed where a Subject field is; other keys (a hand-written file's) any JSON, left out
    subject = schema.Obj(schema.of_record(Subject).fields, (), "subject", rest=schema.JSON)
    return schema.List(schema.of_record(Finding, overrides={
        "fixes": schema.List(fix), "subject": subject}))
