"""`keepalive`: keepalive set on a running process's TCP sockets (fix.retrofit), no restart.

    facts   the process now, and each socket the fix's filter names with what a
            dry run of retrofit says of it ("would set", "already set", ...)
    plan    change "N of M sockets without it" -> the settings, already set,
            manual (pid 1 / halfopen itself), skipped (another process)
    journal one line per socket: {"kind": "keepalive", "target": "pid PID fd FD",
            "pid": ..., "start": ..., "comm": ..., "fd": ..., "inode": ...,
            "old": {Keepalive}, "new": {Keepalive}}
    undo    the socket's old options back, if the fd still holds that socket
    settles a dead peer shows only after idle + interval x count seconds
"""

from __future__ import annotations

import errno
from typing import Any, Optional

from halfopen.records import record

from ...errors import UsageError
from ...kernel.sockopt import Keepalive
from ...model.finding import Finding
from ...model.fixes import KeepaliveChange
from ...model.identity import ProcessIdentity
from ...model.socket import Socket
from .. import retrofit, safety
from ..failures import ProcessGone
from ..retrofit import Settings
from . import who
from .base import Done, FindingAction, Host, Step, skip, skipped, step_for
from .prlimit_action import comm


@record(frozen=True)
class KeepaliveSet:
    """A keepalive step's record: which sockets get which settings."""

    process: ProcessIdentity
    settings: Settings
    targets: tuple[tuple[int, Socket], ...]  # (fd, socket) of those without it

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {**who.process_fields(self.process),
                "settings": [s.idle, s.interval, s.count, s.user_timeout_ms],
                "targets": [[fd, sock.inode] for fd, sock in self.targets]}


@record(frozen=True)
class SocketKeepaliveSet:
    """The journal line of one socket's change."""

    process: ProcessIdentity
    fd: int
    inode: int
    old: Keepalive
    new: Keepalive

    def to_dict(self) -> dict[str, Any]:
        return {"target": f"pid {self.process.pid} fd {self.fd}",
                **who.process_fields(self.process), "fd": self.fd, "inode": self.inode,
                "old": self.old.to_dict(), "new": self.new.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SocketKeepaliveSet:
        return cls(who.process_from(d), d["fd"], d["inode"], Keepalive(**d["old"]),
                   Keepalive(**d["new"]))


@record(frozen=True)
class SocketSeen:
    fd: int
    sock: Socket
    result: str  # retrofit's dry run: would set | already set | skipped | ...


@record(frozen=True)
class KeepaliveFacts:
    comm: str
    process: Optional[ProcessIdentity]
    sockets: tuple[SocketSeen, ...] = ()  # empty when not read (not the process, pid 1, us)


class TurnOnKeepalive(FindingAction):
    proposal = KeepaliveChange  # what a rule writes (model.fixes)
    name = kind = "keepalive"

    def read(self, finding: Finding, change: KeepaliveChange, host: Host) -> KeepaliveFacts:
        pid, settings = _checked(finding, change)
        now = who.process_now(pid, host.proc)
        facts = KeepaliveFacts(comm(pid, host.proc), now)
        if who.not_the_finding_s(finding, change.process, now) or safety.guarded(pid) \
                or now is None:
            return facts
        targets = retrofit.find_sockets(pid, change.filter, host.proc)
        results = retrofit.retrofit(pid, targets, settings, apply=False, start=now.start_time)
        return KeepaliveFacts(facts.comm, now,
                              tuple(SocketSeen(r.fd, r.sock, r.result) for r in results))

    def facts_from_dict(self, d: dict[str, Any]) -> KeepaliveFacts:
        return KeepaliveFacts(d.get("comm", "?"), who.process_of(d.get("process")), tuple(
            SocketSeen(s["fd"], Socket.from_dict(s["socket"]), s["result"])
            for s in d.get("sockets", ())))

    def compare(self, finding: Finding, change: KeepaliveChange, facts: KeepaliveFacts) -> Step:
        pid, settings = _checked(finding, change)
        want = f"keepalive {settings.idle}s/{settings.interval}s x{settings.count}"
        step = step_for(finding, self.name, f"pid {pid} ({facts.comm}) TCP sockets", new=want)
        why = who.not_the_finding_s(finding, change.process, facts.process)
        if why:
            return skipped(step, why)
        assert facts.process is not None  # else why says it has exited
        guard = safety.guarded(pid)
        if guard:
            step.status, step.note, step.text = "manual", guard, change.command()
            return step
        todo = tuple((s.fd, s.sock) for s in facts.sockets if s.result == "would set")
        step.current = f"{len(todo)} of {len(facts.sockets)} sockets without it"
        step.change = KeepaliveSet(facts.process, settings, todo)
        if not todo:
            step.status = "already set"
        return step

    def apply(self, step: Step, jnl: Any, host: Host) -> Done:
        rec = step.change
        assert isinstance(rec, KeepaliveSet), step  # planned by this action
        pid = rec.process.pid
        why = who.process_changed(rec.process, who.process_now(pid, host.proc))
        if why:
            return skip(step, why)

        def before_set(r: retrofit.SocketResult) -> dict:
            assert r.before is not None and r.after is not None  # set only after reading both
            line = SocketKeepaliveSet(rec.process, r.fd, r.sock.inode, r.before, r.after)
            return jnl.intent(self.kind, **line.to_dict(), finding=step.finding)

        results = retrofit.retrofit(pid, list(rec.targets), rec.settings, apply=True,
                                    start=rec.process.start_time, before_set=before_set,
                                    after_set=jnl.done)
        gone = [r for r in results if r.result == "skipped" and r.note.startswith("pid ")]
        if gone and len(gone) == len(results):
            return skip(step, gone[0].note)
        failed = [r for r in results if r.result == "failed"]
        if failed:
            raise OSError(errno.EIO, f"fd {failed[0].fd}: {failed[0].note}")
        count = sum(r.result == "set" for r in results)
        return Done(step.target, "set", f"{count} sockets now {step.new}")

    def undo(self, entry: dict[str, Any], host: Host) -> tuple[str, str]:
        rec = SocketKeepaliveSet.from_dict(entry)
        p = rec.process
        why = who.process_changed(p, who.process_now(p.pid, host.proc))
        if why:
            raise ProcessGone(p.pid, why)
        return retrofit.restore(p.pid, rec.fd, rec.inode, rec.old, start=p.start_time), \
            rec.old.text()

    def settles_in_s(self, step: Step) -> float:
        assert isinstance(step.change, KeepaliveSet), step
        s = step.change.settings
        return s.idle + s.interval * s.count  # a dead peer is reset after the last probe


def _checked(finding: Finding, change: KeepaliveChange) -> tuple[int, Settings]:
    if change.pid <= 0:
        raise UsageError(f"{finding.id}: bad pid {change.pid}: a positive process id")
    w = change.settings
    settings = Settings(w.idle, w.interval, w.count, w.user_timeout_ms)
    settings.check()
    return change.pid, settings

