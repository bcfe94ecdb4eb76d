"""What every fix action shares: the Step it plans, the Done it reports, the roots it reads.

An action (one class per module beside this one) is pyinfra's shape:

    read(finding, change, host) -> Facts    the I/O: what is there now
    facts_from_dict(d) -> Facts             the same facts given as JSON (test cases)
    compare(finding, change, facts) -> Step  pure: current -> wanted, or "already set"
    apply(step, journal, host) -> Done      identity re-checked, intent journaled, changed
    undo(entry, host) -> (outcome, detail)  from the journal line the action wrote
    settles_in_s(step) -> seconds           how long before fix.verify can see it work

A Step holds the action's typed record (`change`); dicts appear only in
to_dict/from_dict: the JSON the CLI prints, and the journal's lines.
"""

from __future__ import annotations

from dataclasses import asdict, field
from typing import Any, ClassVar, Optional, Protocol

from halfopen.records import record

from ...model.finding import Finding, Fix
from ...model.host import HOST
from ...model.subject import Subject
from ..sysctl import PROC_SYS


@record(frozen=True)
class Host:
    """The roots an action reads and writes under (tests point them elsewhere)."""

    proc: str = "/proc"
    sys_root: str = PROC_SYS


class Record(Protocol):
    """An action's typed record: what a Step will change; to_dict is its journal line."""

    def to_dict(self) -> dict[str, Any]: ...


@record
class Step:
    finding: str  # the finding's rule id
    reason: str  # the finding's title
    action: str  # sysctl | prlimit | keepalive | kill | config | code
    target: str  # what changes: a sysctl key, "pid 812 (nginx) RLIMIT_NOFILE", ...
    status: str  # change | already set | manual | skipped
    netns: str = "host"
    current: Any = None
    new: Any = None
    note: str = ""
    text: str = ""  # manual steps: the snippet or command for a person
    change: Optional[Record] = None  # the action's typed record (change, already set)
    subject: Subject = field(default_factory=Subject)  # the finding's, to verify against

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("finding", "reason", "action", "target", "status",
                                            "netns", "current", "new", "note", "text")}
        return {k: v for k, v in d.items() if v not in ("", None)}


@record
class Done:
    """What became of one step (or one undo)."""

    target: str
    outcome: str  # set | already set | manual | failed | restored | left alone | ...
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v != ""}


class Action:
    """What can be applied, journaled and undone; see the module docstring."""

    name: ClassVar[str]  # Step.action, and the fix's "action" in the doctor's JSON
    kind: ClassVar[str]  # the journal lines' "kind" (the name, but "file" for persist)

    def apply(self, step: Step, jnl: Any, host: Host) -> Done:
        raise NotImplementedError

    def undo(self, entry: dict[str, Any], host: Host) -> tuple[str, str]:
        raise NotImplementedError

    def settles_in_s(self, step: Step) -> float:
        """0: the change shows at once (a kill, a limit, most sysctls)."""
        return 0


class FindingAction(Action):
    """An action a finding's fix names: planned from facts read for that finding."""

    proposal: ClassVar[Any]  # the model.fixes record a rule proposes; from_params reads it

    def read(self, finding: Finding, change: Any, host: Host) -> Any:
        raise NotImplementedError

    def compare(self, finding: Finding, change: Any, facts: Any) -> Step:
        raise NotImplementedError

    def facts_from_dict(self, d: Any) -> Any:
        """The facts `read` returns, from JSON (tests/fix/cases)."""
        raise NotImplementedError

    def plan(self, finding: Finding, change: Any, host: Host) -> Step:
        return self.compare(finding, change, self.read(finding, change, host))


def step_for(finding: Finding, action: str, target: str, status: str = "change",
             **fields: Any) -> Step:
    """A Step about `finding`, in the finding's namespace unless `netns` says otherwise."""
    fields.setdefault("netns", finding.subject.netns or HOST)
    return Step(finding.id, finding.title, action, target, status, **fields)


def manual(finding: Finding, fix: Fix, note: str = "") -> Step:
    """A fix halfopen does not apply (or cannot plan): its text, for a person."""
    params = fix.params or {}
    return step_for(finding, fix.action, params.get("file") or "", "manual",
                    text=params.get("snippet") or fix.command, note=note or fix.description)


def skipped(step: Step, why: str) -> Step:
    """Not the process or namespace the finding was about: nothing will be done."""
    step.status, step.note, step.change = "skipped", why, None
    return step


def skip(step: Step, why: str) -> Done:
    """Apply found another process or namespace than planned."""
    return Done(step.target, "skipped", why + "; nothing done")


def join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b

