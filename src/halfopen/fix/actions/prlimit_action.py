"""`prlimit`: a process's RLIMIT_NOFILE raised with prlimit(2), never lowered.

    facts   the process now (pid, start time, comm), its limits, whether we may
            raise a hard limit (CAP_SYS_RESOURCE), fs.nr_open, the lines that make
            it last (its systemd unit, its user)
    plan    change soft/hard -> soft/hard, already set, manual (the wanted limit
            is out of reach, or pid 1 / halfopen itself), skipped (another process)
    journal {"kind": "prlimit", "target": "pid PID nofile", "pid": ..., "start": ...,
             "comm": ..., "old": [soft, hard], "new": [soft, hard]}
    undo    the old limits back, unless they were changed since
"""

from __future__ import annotations

from typing import Any, Optional

from halfopen.records import record

from ...errors import UsageError
from ...kernel import procfs
from ...model.finding import Finding
from ...model.fixes import RlimitChange
from ...model.identity import ProcessIdentity, recorded_process
from .. import rlimit, safety
from ..failures import ProcessGone
from ..rlimit import Limits
from . import who
from .base import Done, FindingAction, Host, Step, skip, skipped, step_for


@record(frozen=True)
class NofileSet:
    """A prlimit step's record, and its journal line's."""

    process: ProcessIdentity
    old: Limits
    new: Limits

    def to_dict(self) -> dict[str, Any]:
        return {"target": f"pid {self.process.pid} nofile", **who.process_fields(self.process),
                "old": [self.old.soft, self.old.hard], "new": [self.new.soft, self.new.hard]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NofileSet:
        return cls(who.process_from(d), Limits(*d["old"]), Limits(*d["new"]))


@record(frozen=True)
class NofileFacts:
    comm: str  # for the step's target; "?" when not ours to read
    process: Optional[ProcessIdentity]  # the pid now; None: exited
    limits: Optional[Limits] = None  # None: not read (not the process, or pid 1 / us)
    may_raise_hard: bool = False  # CAP_SYS_RESOURCE
    nr_open: int = 1048576  # fs.nr_open: no hard limit passes it
    lasting: str = ""  # rlimit.lasting_text, when the wanted limit is out of reach


class RaiseNofile(FindingAction):
    proposal = RlimitChange  # what a rule writes (model.fixes)
    name = kind = "prlimit"

    def read(self, finding: Finding, change: RlimitChange, host: Host) -> NofileFacts:
        pid = _checked(finding, change)
        now = who.process_now(pid, host.proc)
        facts = NofileFacts(comm(pid, host.proc), now)
        want = recorded_process(finding.subject, pid)
        if who.not_the_finding_s(finding, want, now) or safety.guarded(pid):
            return facts
        limits = rlimit.read(pid)
        soft, hard = change.soft, change.hard
        may, ceiling = rlimit.can_raise_hard(host.proc), procfs.nr_open(host.proc)
        _new, note = rlimit.plan(limits, soft, hard, may, ceiling)
        lasting = rlimit.lasting_text(pid, soft, max(hard or 0, soft), host.proc) if note else ""
        return NofileFacts(facts.comm, now, limits, may, ceiling, lasting)

    def facts_from_dict(self, d: dict[str, Any]) -> NofileFacts:
        limits = d.get("limits")
        return NofileFacts(d.get("comm", "?"), who.process_of(d.get("process")),
                           None if limits is None else Limits(*limits),
                           bool(d.get("may_raise_hard")), int(d.get("nr_open", 1048576)),
                           d.get("lasting", ""))

    def compare(self, finding: Finding, change: RlimitChange, facts: NofileFacts) -> Step:
        pid, soft, hard = _checked(finding, change), change.soft, change.hard
        step = step_for(finding, self.name, f"pid {pid} ({facts.comm}) RLIMIT_NOFILE")
        want = recorded_process(finding.subject, pid)
        why = who.not_the_finding_s(finding, want, facts.process)
        if why:
            return skipped(step, why)
        guard = safety.guarded(pid)
        if guard or facts.limits is None or facts.process is None:  # only pid 1 and us
            step.status, step.note = "manual", guard
            step.text = f"prlimit --pid {pid} --nofile={soft}:{hard or soft}"
            return step
        current = facts.limits
        new, note = rlimit.plan(current, soft, hard, facts.may_raise_hard, facts.nr_open)
        step.current, step.new, step.note, step.text = current.text(), new.text(), note, facts.lasting
        step.change = NofileSet(facts.process, current, new)
        if new == current:
            step.status = "already set" if not note else "manual"
        return step

    def apply(self, step: Step, jnl: Any, host: Host) -> Done:
        rec = step.change
        assert isinstance(rec, NofileSet), step  # planned by this action
        pid = rec.process.pid
        why = who.process_changed(rec.process, who.process_now(pid, host.proc))
        if why:
            return skip(step, why)
        old = rlimit.read(pid)
        if old == rec.new:
            return Done(step.target, "already set", rec.new.text())
        intent = jnl.intent(self.kind, **NofileSet(rec.process, old, rec.new).to_dict(),
                            finding=step.finding)
        # the pause above (a journal fsync) is long enough for a pid to be reused
        why = who.process_changed(rec.process, who.process_now(pid, host.proc))
        if why:
            return skip(step, why)
        rlimit.write(pid, rec.new)
        jnl.done(intent)
        detail = f"{old.text()} -> {rec.new.text()}"
        return Done(step.target, "set", detail + (f"; {step.note}" if step.note else ""))

    def undo(self, entry: dict[str, Any], host: Host) -> tuple[str, str]:
        rec = NofileSet.from_dict(entry)
        why = who.process_changed(rec.process, who.process_now(rec.process.pid, host.proc))
        if why:
            raise ProcessGone(rec.process.pid, why)
        now = rlimit.read(rec.process.pid)
        if now == rec.old:
            return "already set", now.text()
        if now != rec.new:
            return "left alone", f"changed since: now {now.text()}, halfopen set {rec.new.text()}"
        rlimit.write(rec.process.pid, rec.old)
        return "restored", f"{now.text()} -> {rec.old.text()}"


def _checked(finding: Finding, change: RlimitChange) -> int:
    if change.pid <= 0:
        raise UsageError(f"{finding.id}: bad pid {change.pid}: a positive process id")
    if change.resource not in rlimit.RESOURCES:
        raise UsageError(f"{finding.id}: prlimit resource {change.resource!r}; valid: nofile")
    return change.pid  # one that has exited since is a skipped step, not bad input


def comm(pid: int, proc: str) -> str:
    try:
        return procfs.comm(pid, proc) or "?"
    except OSError:  # not ours to read
        return "?"
