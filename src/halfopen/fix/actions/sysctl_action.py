"""`sysctl`: one key written under /proc/sys in the finding's namespace.

    facts   the namespace under the finding's name now (inode, cookie), the value
    plan    change current -> new, already set, manual (a host-wide key asked from
            inside a namespace), or skipped (the namespace was recreated)
    journal {"kind": "sysctl", "target": KEY, "netns": ..., "netns_inode": ...,
             "netns_cookie": ..., "old": "...", "new": "..."}
    undo    the old value back, unless someone changed it since
    settles tcp_retries2 for dead-peer: at the next backoff; tcp_fin_timeout: the
            orphans already in FIN_WAIT2 keep their old timeout
"""

from __future__ import annotations

import errno
from typing import Any, Optional

from halfopen.records import record

from ...collect import netns
from ...diagnose.deadpeer import retries_timeout_s
from ...model.finding import Finding
from ...model.fixes import SysctlChange
from ...model.identity import NetnsIdentity, recorded_netns
from .. import sysctl
from . import who
from .base import Done, FindingAction, Host, Step, skip, skipped, step_for


@record(frozen=True)
class SysctlSet:
    """A sysctl step's record, and its journal line's."""

    key: str
    new: str  # checked against model.sysctls
    netns: NetnsIdentity  # re-checked right before the write
    old: Optional[str] = None  # read at plan, read again at apply

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.key, **who.netns_fields(self.netns), "old": self.old,
                "new": self.new}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SysctlSet:
        return cls(d["target"], d["new"], who.netns_from(d), d["old"])


@record(frozen=True)
class SysctlFacts:
    netns: NetnsIdentity  # the namespace under the finding's name now
    value: Optional[str] = None  # now; None when it was not read (the namespace changed)


class SetSysctl(FindingAction):
    proposal = SysctlChange  # what a rule writes (model.fixes)
    name = kind = "sysctl"

    def read(self, finding: Finding, change: SysctlChange, host: Host) -> Optional[SysctlFacts]:
        sysctl.check(change.key, change.value)  # a bad value is refused before any read
        if self._host_wide_from_netns(change):
            return None
        space = who.find_netns(change.netns, host.proc)
        now = who.netns_now(space, host.proc)
        if who.netns_changed(recorded_netns(finding.subject, change.netns), now):
            return SysctlFacts(now)
        return SysctlFacts(now, sysctl.read(change.key, space, host.sys_root))

    def facts_from_dict(self, d: Optional[dict[str, Any]]) -> Optional[SysctlFacts]:
        return None if d is None else SysctlFacts(who.netns_of(d["netns"]), d.get("value"))

    def compare(self, finding: Finding, change: SysctlChange,
                facts: Optional[SysctlFacts]) -> Step:
        key, where = change.key, change.netns
        value = sysctl.check(key, change.value)
        step = step_for(finding, self.name, key, netns=where, new=value)
        if facts is None:  # _host_wide_from_netns
            step.status = "manual"
            step.note = (f"{key} is one value for the whole host; halfopen does not change "
                         f"the host from a finding about namespace {where}")
            step.text = f"sysctl -w {key}='{value}'   # in the host namespace"
            return step
        recorded = recorded_netns(finding.subject, where)
        why = who.netns_changed(recorded, facts.netns)
        if why:
            return skipped(step, why)
        step.current = facts.value
        step.change = SysctlSet(key, value, who.to_apply(recorded, facts.netns), facts.value)
        if facts.value == value:
            step.status = "already set"
        return step

    @staticmethod
    def _host_wide_from_netns(change: SysctlChange) -> bool:
        return not sysctl.knob(change.key).per_netns and change.netns != "host"

    def apply(self, step: Step, jnl: Any, host: Host) -> Done:
        rec = step.change
        assert isinstance(rec, SysctlSet), step  # planned by this action
        with netns.pinned(who.find_netns(step.netns, host.proc)) as space:
            now = who.netns_now(space, host.proc)
            why = who.netns_changed(rec.netns, now)
            if why:
                return skip(step, why)
            old = sysctl.read(rec.key, space, host.sys_root)
            if old == rec.new:
                return Done(rec.key, "already set", rec.new)
            done = SysctlSet(rec.key, rec.new, who.named(now, step.netns), old)
            intent = jnl.intent(self.kind, **done.to_dict(), finding=step.finding)
            sysctl.write(rec.key, rec.new, space, host.sys_root)
            jnl.done(intent)
            after = sysctl.read(rec.key, space, host.sys_root)
        if after != rec.new:
            raise OSError(errno.EIO, f"wrote {rec.new!r}, the kernel now reports {after!r}")
        return Done(rec.key, "set", f"{old} -> {rec.new}")

    def undo(self, entry: dict[str, Any], host: Host) -> tuple[str, str]:
        rec = SysctlSet.from_dict(entry)
        with netns.pinned(who.find_netns(rec.netns.name, host.proc)) as space:
            why = who.netns_changed(rec.netns, who.netns_now(space, host.proc))
            if why:
                return "gone", why + "; left alone (the namespace changed is gone)"
            now = sysctl.read(rec.key, space, host.sys_root)
            if now == rec.old:
                return "already set", now
            if now != rec.new:
                return "left alone", (f"changed since by someone else: now {now}, halfopen "
                                      f"set {rec.new}")
            sysctl.write(rec.key, str(rec.old), space, host.sys_root)
        return "restored", f"{now} -> {rec.old}"

    def settles_in_s(self, step: Step) -> float:
        if step.target == "net.ipv4.tcp_retries2" and step.finding == "dead-peer":
            return round(retries_timeout_s(int(step.new)), 1)  # the next backoff runs to it
        if step.target == "net.ipv4.tcp_fin_timeout":
            return float(step.new)  # orphans in FIN_WAIT2 go at their old timeout
        return 0
