"""The plan: each automatic fix of the chosen findings as a Step, current -> new.

Building a plan reads facts (sysctl values, limits, socket options) and
compares them with what the fix wants; it changes nothing. Every value is
checked first, so a bad one stops the whole run before any change. Fixes
halfopen cannot apply (config snippets, code) become "manual" steps whose
text is printed, never dropped.

    status   "change"       apply would change current -> new
             "already set"  current is what the fix wants
             "manual"       a person must do it; `text` says what
             "skipped"      the process or namespace is no longer the one the
                            finding was about (a reused pid, a namespace
                            recreated under its name); `note` says how

Identity: a finding's subject carries `start_time` (with pid and comm) and
`netns_cookie`/`netns_inode` (halfopen doctor records them); the plan
compares them with what runs now, and records them in each step's params
so that apply compares them again right before the change. A step on a pid
whose start time the finding does not record is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from typing import Any

from halfopen.records import record

from ..errors import UsageError
from ..kernel import identity
from ..kernel import proc as procfs
from ..model import fixes
from ..model.finding import Finding, Fix
from ..model.identity import NetnsIdentity, ProcessIdentity, recorded_netns, recorded_process
from ..model.rules import RULE_IDS
from . import namespace, retrofit, rlimit, safety, sysctl
from . import targets as kill_targets
from .errors import AccessDenied, NotSupported, ProcessGone

AUTOMATIC = ("sysctl", "prlimit", "keepalive", "kill")


@record
class Step:
    finding: str  # the finding's rule id
    reason: str  # the finding's title
    action: str  # sysctl | prlimit | keepalive | kill | config | code
    target: str  # what changes: a sysctl key, "pid 812 (nginx) RLIMIT_NOFILE", ...
    status: str  # change | already set | manual
    netns: str = "host"
    current: Any = None
    new: Any = None
    note: str = ""
    text: str = ""  # manual steps: the snippet or command for a person
    params: dict[str, Any] = field(default_factory=dict)
    subject: dict[str, Any] = field(default_factory=dict)  # the finding's, to verify against

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("finding", "reason", "action", "target", "status",
                                            "netns", "current", "new", "note", "text")}
        return {k: v for k, v in d.items() if v not in ("", None)}


def select(findings: Iterable[Finding], ids: Iterable[str]) -> tuple[list[Finding], list[str]]:
    """The findings the ids name (all when none), and notes for ids with no finding now."""
    findings, ids = list(findings), list(ids)
    for i in ids:
        if i not in RULE_IDS:
            raise UsageError(f"unknown finding id {i!r}; valid ids: {', '.join(RULE_IDS)}")
    if not ids:
        return findings, []
    chosen = [f for f in findings if f.id in ids]
    present = {f.id for f in chosen}
    return chosen, [f"no current finding {i}: nothing to fix for it" for i in ids
                    if i not in present]


def build(findings: Iterable[Finding], proc: str = "/proc",
          sys_root: str = sysctl.PROC_SYS, only_netns: set[str] | None = None) -> list[Step]:
    """Steps for every fix of every finding; UsageError on the first bad value.

    only_netns (from --netns/--all-netns): an automatic step that would act in
    any other namespace, the host included, becomes manual: `fix --netns X`
    changes nothing outside X, even when a finding about X names a host-wide
    cure (nf_conntrack_max, tcp_max_orphans).
    """
    steps: list[Step] = []
    seen: dict[tuple[str, str], Step] = {}
    for finding in findings:
        for fix in finding.fixes:
            step = _step(finding, fix, proc, sys_root)
            step.subject = dict(finding.subject)
            why = safety.outside(step.netns, only_netns)
            if why and step.action in AUTOMATIC and step.status != "manual":
                step.status = "manual"
                step.note = _join(step.note, why)
            key = (step.action, step.netns + " " + step.target)
            if step.action in AUTOMATIC and key in seen:
                first = seen[key]
                if first.new != step.new:
                    first.note = _join(first.note, f"{step.finding} wants {step.new}; "
                                                    f"{first.finding}'s {first.new} is kept")
                continue
            seen[key] = step
            steps.append(step)
    return steps


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def _manual(finding: Finding, fix: Fix, note: str = "") -> Step:
    params = fix.params or {}
    text = params.get("snippet") or fix.command
    target = params.get("file") or ""
    return Step(finding.id, finding.title, fix.action, target, "manual",
                netns=str(finding.subject.get("netns", "host")), text=text,
                note=note or fix.description)


def _step(finding: Finding, fix: Fix, proc: str, sys_root: str) -> Step:
    if not fix.automatic or fix.action not in AUTOMATIC:
        return _manual(finding, fix)
    try:
        change = fixes.change(fix.action, dict(fix.params or {}), finding.subject)
    except ValueError as exc:
        raise UsageError(f"{finding.id}: {exc}") from None
    if isinstance(change, fixes.SysctlChange):
        return _sysctl_step(finding, change, sys_root, proc)
    try:
        if isinstance(change, fixes.RlimitChange):
            return _prlimit_step(finding, change, proc)
        if isinstance(change, fixes.KeepaliveChange):
            return _keepalive_step(finding, fix, change, proc)
        return _kill_step(finding, fix, change, proc)
    except (ProcessGone, AccessDenied, NotSupported) as exc:
        # a fact we could not read: the fix stays on the plan, for a person
        return _manual(finding, fix, note=f"cannot plan it: {exc}")


def _sysctl_step(finding: Finding, change: fixes.SysctlChange, sys_root: str, proc: str) -> Step:
    key, where = change.key, change.netns
    value = sysctl.check(key, change.value)
    knob = sysctl.KNOBS[key]
    base = Step(finding.id, finding.title, "sysctl", key, "change", netns=where, new=value,
                params={"key": key, "value": value, "netns": where})
    if not knob.per_netns and where != "host":
        base.status = "manual"
        base.note = (f"{key} is one value for the whole host; halfopen does not change the "
                     f"host from a finding about namespace {where}")
        base.text = f"sysctl -w {key}='{value}'   # in the host namespace"
        return base
    space = namespace.find(where, proc)
    recorded = recorded_netns(finding.subject, where)
    base.params.update(_netns_params(recorded, space, proc))
    why = _netns_differs(recorded, space, proc)
    if why:
        return _skipped(base, why)
    base.current = sysctl.read(key, space, sys_root)
    if base.current == value:
        base.status = "already set"
    return base


def _netns_differs(recorded: NetnsIdentity, space: Any, proc: str) -> str:
    """'' when `space` is the namespace the finding recorded (or it recorded none)."""
    if not recorded.recorded:
        return ""
    return namespace.differs(space, recorded.inode, recorded.cookie, proc)


def _netns_params(recorded: NetnsIdentity, space: Any, proc: str) -> dict[str, Any]:
    """The identity a step carries to apply: the recorded one, else the one read now."""
    if recorded.recorded:
        return {"netns_inode": recorded.inode, "netns_cookie": recorded.cookie}
    return namespace.identity(space, proc)


def _skipped(step: Step, why: str) -> Step:
    step.status, step.note = "skipped", why
    step.params = {}
    return step


def _process(finding: Finding, want: ProcessIdentity, proc: str) -> tuple[dict[str, Any], str]:
    """(params naming the process: pid, start, comm), or why it is not the finding's.

    A pid is acted on only when the finding recorded its start time (halfopen
    doctor does, collect.stamp): a pid alone, from a findings file without
    `start_time` (hand-written, or older than identity) or named only in a
    kill filter, may since belong to any process, so it is skipped like a
    pid whose start time changed.
    """
    pid, subject = want.pid, finding.subject
    if subject.get("pid") == pid and "start_time" in subject and subject["start_time"] is None:
        return {}, (f"pid {pid}: the doctor could not vouch that it is the process it "
                    "diagnosed (it started after the snapshot, or exited)")
    if want.start_time is None:
        return {}, (f"pid {pid}: the finding records no start_time for it, so it cannot be "
                    "told from a later process that reused the pid; run `halfopen doctor "
                    "--json` again for a findings file that does")
    why = identity.differs(pid, want.start_time, want.comm, proc)
    if why:
        return {}, why
    now = identity.process(pid, proc)
    if now is None:
        return {}, f"pid {pid} has exited"
    return {"pid": pid, "start": now.start_time, "comm": now.comm}, ""


def _positive(finding: Finding, pid: int) -> int:
    if pid <= 0:
        raise UsageError(f"{finding.id}: bad pid {pid}: a positive process id")
    return pid  # one that has exited since is a skipped step (_process), not bad input


def _prlimit_step(finding: Finding, change: fixes.RlimitChange, proc: str) -> Step:
    pid, soft, hard = _positive(finding, change.pid), change.soft, change.hard
    if change.resource not in rlimit.RESOURCES:
        raise UsageError(f"{finding.id}: prlimit resource {change.resource!r}; valid: nofile")
    comm = _comm(pid, proc)
    step = Step(finding.id, finding.title, "prlimit", f"pid {pid} ({comm}) RLIMIT_NOFILE",
                "change", netns=str(finding.subject.get("netns", "host")))
    who, why = _process(finding, recorded_process(finding.subject, pid), proc)
    if why:
        return _skipped(step, why)
    guard = safety.guarded(pid)
    if guard:
        step.status, step.note = "manual", guard
        step.text = f"prlimit --pid {pid} --nofile={soft}:{hard or soft}"
        return step
    current = rlimit.read(pid)
    new, note = rlimit.plan(current, soft, hard, rlimit.can_raise_hard(proc), procfs.nr_open(proc))
    step.current, step.new, step.note = current.text(), new.text(), note
    step.params = {**who, "old": [current.soft, current.hard], "new": [new.soft, new.hard]}
    if note:
        step.text = rlimit.lasting_text(pid, soft, max(hard or 0, soft), proc)
    if new == current:
        step.status = "already set" if not note else "manual"
    return step


def _comm(pid: int, proc: str) -> str:
    try:
        return procfs.comm(pid, proc) or "?"
    except OSError:  # not ours to read
        return "?"


def _keepalive_step(finding: Finding, fix: Fix, change: fixes.KeepaliveChange, proc: str) -> Step:
    pid = _positive(finding, change.pid)
    wanted = change.settings
    settings = retrofit.Settings(wanted.idle, wanted.interval, wanted.count, wanted.user_timeout_ms)
    settings.check()
    comm = _comm(pid, proc)
    want = f"keepalive {settings.idle}s/{settings.interval}s x{settings.count}"
    step = Step(finding.id, finding.title, "keepalive", f"pid {pid} ({comm}) TCP sockets",
                "change", netns=str(finding.subject.get("netns", "host")), new=want)
    who, why = _process(finding, change.process, proc)
    if why:
        return _skipped(step, why)
    guard = safety.guarded(pid)
    if guard:
        step.status, step.note, step.text = "manual", guard, fix.command
        return step
    targets = retrofit.find_sockets(pid, change.filter, proc)
    results = retrofit.retrofit(pid, targets, settings, apply=False, start=who["start"])
    todo = [r for r in results if r.result == "would set"]
    step.current = f"{len(todo)} of {len(results)} sockets without it"
    step.params = {**who, "settings": settings, "targets": [(r.fd, r.sock) for r in todo]}
    if not todo:
        step.status = "already set"
    return step


def _kill_step(finding: Finding, fix: Fix, change: fixes.KillChange, proc: str) -> Step:
    flt = change.filter
    if flt.is_empty:
        raise UsageError(f"{finding.id}: a kill fix needs a filter; an empty one names every socket")
    recorded = change.netns or recorded_netns(finding.subject, "host")
    where = recorded.name
    step = Step(finding.id, finding.title, "kill", flt.text, "change", netns=where,
                new="destroyed (RST)")
    holders = []
    for pid in sorted(safety.named_pids(flt.expr) | _subject_pid(finding)):
        who, why = _process(finding, recorded_process(finding.subject, pid), proc)
        if why:
            return _skipped(step, why)
        holders.append(who)
    space = namespace.find(where, proc)
    why = _netns_differs(recorded, space, proc)
    if why:
        return _skipped(step, why)
    socks = kill_targets.matching(flt, (space,), proc)
    step.current = f"{len(socks)} sockets"
    listeners = safety.listening(socks)
    refused = safety.refused(socks, flt)
    if listeners or refused:
        step.status = "manual"
        step.note = "matches listening sockets" if listeners else refused[0][1]
        step.text = fix.command
        return step
    step.params = {"sockets": socks, "holders": holders, **_netns_params(recorded, space, proc)}
    if not socks:
        step.status = "already set"
        step.current = "no matching sockets"
    return step



def _subject_pid(finding: Finding) -> set[int]:
    pid = finding.subject.get("pid")
    return {pid} if isinstance(pid, int) and not isinstance(pid, bool) else set()
