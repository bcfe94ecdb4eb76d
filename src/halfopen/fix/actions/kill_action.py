"""`kill`: SOCK_DESTROY of the sockets a filter names (fix.destroy): the peer gets an RST.

    facts   each process the kill is about (the finding's pid, pids the filter
            names) as it runs now, the namespace now, the sockets the filter matches
    plan    change "N sockets" -> destroyed, already set (none match), manual
            (a listener, or a socket of pid 1 / halfopen the filter did not
            name), skipped (another process or namespace)
    journal {"kind": "kill", "target": FILTER, "netns": ..., "netns_inode": ...,
             "netns_cookie": ..., "old": "N sockets", "new": "destroyed"}, and its
            "done" line lists the connections destroyed
    undo    none: a destroyed connection cannot be brought back
"""

from __future__ import annotations

from typing import Any, Optional

from halfopen.records import record

from ...collect import netns
from ...errors import UsageError
from ...model.finding import Finding
from ...model.fixes import KillChange
from ...model.host import HOST
from ...model.identity import NetnsIdentity, ProcessIdentity, recorded_netns, recorded_process
from ...model.socket import Socket
from .. import destroy, safety
from .. import targets as kill_targets
from . import who
from .base import Done, FindingAction, Host, Step, skip, skipped, step_for


@record(frozen=True)
class KillSet:
    """A kill step's record; to_dict is its journal line (the sockets are not kept)."""

    filter: str
    netns: NetnsIdentity
    holders: tuple[ProcessIdentity, ...]  # re-checked right before the kill
    sockets: tuple[Socket, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.filter, **who.netns_fields(self.netns),
                "old": f"{len(self.sockets)} sockets", "new": "destroyed"}


@record(frozen=True)
class KillFacts:
    processes: tuple[tuple[int, Optional[ProcessIdentity]], ...]  # (pid, as it runs now)
    netns: Optional[NetnsIdentity] = None  # None: not read (a process was not the finding's)
    sockets: tuple[Socket, ...] = ()


class KillSockets(FindingAction):
    proposal = KillChange  # what a rule writes (model.fixes)
    name = kind = "kill"

    def read(self, finding: Finding, change: KillChange, host: Host) -> KillFacts:
        _checked(finding, change)
        processes = []
        for pid in _pids(finding, change):
            now = who.process_now(pid, host.proc)
            processes.append((pid, now))
            if who.not_the_finding_s(finding, recorded_process(finding.subject, pid), now):
                return KillFacts(tuple(processes))
        space = who.find_netns(_recorded(finding, change).name, host.proc)
        now_ns = who.netns_now(space, host.proc)
        if who.netns_changed(_recorded(finding, change), now_ns):
            return KillFacts(tuple(processes), now_ns)
        socks = kill_targets.matching(change.filter, (space,), host.proc)
        return KillFacts(tuple(processes), now_ns, tuple(socks))

    def facts_from_dict(self, d: dict[str, Any]) -> KillFacts:
        netns = d.get("netns")
        return KillFacts(tuple((int(pid), who.process_of(p)) for pid, p in d.get("processes", ())),
                         None if netns is None else who.netns_of(netns),
                         tuple(Socket.from_dict(s) for s in d.get("sockets", ())))

    def compare(self, finding: Finding, change: KillChange, facts: KillFacts) -> Step:
        _checked(finding, change)
        recorded = _recorded(finding, change)
        flt = change.filter
        step = step_for(finding, self.name, flt.text, netns=recorded.name, new="destroyed (RST)")
        holders, seen = [], dict(facts.processes)
        for pid in _pids(finding, change):
            now = seen.get(pid)
            why = who.not_the_finding_s(finding, recorded_process(finding.subject, pid), now)
            if why:
                return skipped(step, why)
            assert now is not None  # else why says it has exited
            holders.append(now)
        assert facts.netns is not None  # read unless a process above was skipped
        why = who.netns_changed(recorded, facts.netns)
        if why:
            return skipped(step, why)
        socks = list(facts.sockets)
        step.current = f"{len(socks)} sockets"
        listeners, refused = safety.listening(socks), safety.refused(socks, flt)
        if listeners or refused:
            step.status, step.text = "manual", change.command()
            step.note = "matches listening sockets" if listeners else refused[0][1]
            return step
        step.change = KillSet(flt.text, who.to_apply(recorded, facts.netns), tuple(holders),
                              tuple(socks))
        if not socks:
            step.status, step.current = "already set", "no matching sockets"
        return step

    def apply(self, step: Step, jnl: Any, host: Host) -> Done:
        rec = step.change
        assert isinstance(rec, KillSet), step  # planned by this action
        for holder in rec.holders:  # the processes the finding was about
            why = who.process_changed(holder, who.process_now(holder.pid, host.proc))
            if why:
                return skip(step, why)
        with netns.pinned(who.find_netns(step.netns, host.proc)) as space:
            now = who.netns_now(space, host.proc)
            why = who.netns_changed(rec.netns, now)
            if why:
                return skip(step, why)
            line = KillSet(rec.filter, who.named(now, step.netns), rec.holders, rec.sockets)
            intent = jnl.intent(self.kind, **line.to_dict(), finding=step.finding)
            outcomes = destroy.destroy(list(rec.sockets), {step.netns: space}, host.proc)
        killed = [o for o in outcomes if o.result == "killed"]
        jnl.done(intent, killed=[f"{o.sock.local_addr}:{o.sock.local_port} -> "
                                 f"{o.sock.peer_addr}:{o.sock.peer_port}" for o in killed])
        bad = [o for o in outcomes if o.result not in destroy.DONE]
        if bad:
            raise OSError(bad[0].errno, f"{bad[0].result}: {bad[0].reason}")
        return Done(step.target, "set", f"{len(killed)} sockets destroyed; their owners' fds "
                                        "stay open until they close them")

    def undo(self, entry: dict[str, Any], host: Host) -> tuple[str, str]:
        return "cannot undo", "a destroyed connection cannot be brought back"


def _checked(finding: Finding, change: KillChange) -> None:
    if change.filter.is_empty:
        raise UsageError(f"{finding.id}: a kill fix needs a filter; an empty one names every "
                         "socket")


def _recorded(finding: Finding, change: KillChange) -> NetnsIdentity:
    return change.netns or recorded_netns(finding.subject, HOST)


def _pids(finding: Finding, change: KillChange) -> list[int]:
    """The pids the filter names and the finding's own: each must still be the one diagnosed."""
    pid = finding.subject.pid
    own = {pid} if pid is not None else set()
    return sorted(safety.named_pids(change.filter.expr) | own)
