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
compares them with what runs now, and records them in each step's typed
record (`Step.change`) so that apply compares them again right before the
change. A step on a pid whose start time the finding does not record is
skipped.

Each action reads its facts and compares them in its own class (fix.actions);
this module only chooses the action by the fix's name and merges duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import UsageError
from ..model.finding import Finding, Fix
from ..model.rules import RULE_IDS
from . import safety
from .actions import FIXES, FindingAction, Host, Step
from .actions.base import join, manual
from .failures import AccessDenied, NotSupported, ProcessGone
from .sysctl import PROC_SYS

AUTOMATIC = tuple(FIXES)

__all__ = ["AUTOMATIC", "Step", "build", "proposal", "select", "step_of"]


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
          sys_root: str = PROC_SYS, only_netns: set[str] | None = None) -> list[Step]:
    """Steps for every fix of every finding; UsageError on the first bad value.

    only_netns (from --netns/--all-netns): an automatic step that would act in
    any other namespace, the host included, becomes manual: `fix --netns X`
    changes nothing outside X, even when a finding about X names a host-wide
    cure (nf_conntrack_max, tcp_max_orphans).
    """
    host = Host(proc, sys_root)
    steps: list[Step] = []
    seen: dict[tuple[str, str], Step] = {}
    for finding in findings:
        for fix in finding.fixes:
            step = step_of(finding, fix, host)
            step.subject = finding.subject
            why = safety.outside(step.netns, only_netns)
            if why and step.action in AUTOMATIC and step.status != "manual":
                step.status, step.note = "manual", join(step.note, why)
            key = (step.action, step.netns + " " + step.target)
            if step.action in AUTOMATIC and key in seen:
                first = seen[key]
                if first.new != step.new:
                    first.note = join(first.note, f"{step.finding} wants {step.new}; "
                                                  f"{first.finding}'s {first.new} is kept")
                continue
            seen[key] = step
            steps.append(step)
    return steps


def proposal(finding: Finding, fix: Fix) -> tuple[FindingAction, Any]:
    """The action an automatic fix names and its typed change; UsageError on bad params."""
    action = FIXES[fix.action]
    try:
        return action, action.proposal.from_params(dict(fix.params or {}), finding.subject)
    except ValueError as exc:
        raise UsageError(f"{finding.id}: {exc}") from None


def step_of(finding: Finding, fix: Fix, host: Host) -> Step:
    """The Step of one fix: its action's plan, or a manual step."""
    if not fix.automatic or fix.action not in FIXES:
        return manual(finding, fix)
    action, change = proposal(finding, fix)
    try:
        return action.plan(finding, change, host)
    except (ProcessGone, AccessDenied, NotSupported) as exc:
        # a fact we could not read: the fix stays on the plan, for a person
        return manual(finding, fix, note=f"cannot plan it: {exc}")
