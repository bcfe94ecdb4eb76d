"""Carry out a plan's steps with a write-ahead journal, and roll the journal back.

Each change is: its intent journaled (fsync'ed), the identity of its process
or namespace re-checked, the change, a "done" line. An intent that cannot be
written stops the run before its change (journal.JournalError, exit 2). A
process or namespace that is no longer the one planned (a reused pid, a
namespace deleted and recreated under its name) is skipped with one line.
The first failure stops the run: the journal then holds what changed, and
`rollback` restores it.
"""

from __future__ import annotations

import errno
from dataclasses import asdict
from typing import Any

from halfopen.records import record

from .. import fsio
from ..collect import netns
from ..errors import HalfopenError
from ..kernel import identity
from ..kernel.sockopt import Keepalive
from . import destroy, journal, namespace, persist, retrofit, rlimit, sysctl
from .errors import ProcessGone
from .plan import Step


@record
class Done:
    """What became of one step (or one undo)."""

    target: str
    outcome: str  # set | already set | manual | failed | restored | left alone | ...
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v != ""}


class Failed(Exception):
    """A step failed; `done` lists what was carried out before it."""

    def __init__(self, reason: str, done: list[Done]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.done = done


def _oserror(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{name}: {exc.strerror}" if name else str(exc)


def apply(steps: list[Step], jnl: journal.Journal, proc: str = "/proc",
          sys_root: str = sysctl.PROC_SYS) -> list[Done]:
    """Apply each "change" step in order; raise Failed at the first failure.

    journal.JournalError passes through: the change it was about is not made.
    """
    done: list[Done] = []
    for step in steps:
        if step.status != "change":
            done.append(Done(step.target, step.status, step.note))
            continue
        try:
            done.append(_APPLY[step.action](step, jnl, proc, sys_root))
        except journal.JournalError as exc:
            if exc.changed or any(d.outcome == "set" for d in done):
                raise Failed(str(exc), done) from exc
            raise  # nothing was changed: the one line, exit 2
        except OSError as exc:
            raise Failed(f"{step.action} {step.target}: {_oserror(exc)}", done) from exc
        except HalfopenError as exc:
            raise Failed(f"{step.action} {step.target}: {exc}", done) from exc
    return done


def _skip(step: Step, why: str) -> Done:
    return Done(step.target, "skipped", why + "; nothing done")


def _apply_sysctl(step: Step, jnl: journal.Journal, proc: str, sys_root: str) -> Done:
    p = step.params
    key, value = p["key"], p["value"]
    with netns.pinned(namespace.find(step.netns, proc)) as space:
        why = namespace.differs(space, p.get("netns_inode"), p.get("netns_cookie"), proc)
        if why:
            return _skip(step, why)
        old = sysctl.read(key, space, sys_root)
        if old == value:
            return Done(key, "already set", value)
        intent = jnl.intent("sysctl", target=key, netns=step.netns,
                            **namespace.identity(space, proc), old=old, new=value,
                            finding=step.finding)
        sysctl.write(key, value, space, sys_root)
        jnl.done(intent)
        now = sysctl.read(key, space, sys_root)
    if now != value:
        raise OSError(errno.EIO, f"wrote {value!r}, the kernel now reports {now!r}")
    return Done(key, "set", f"{old} -> {value}")


def _process_differs(p: dict, proc: str) -> str:
    return identity.differs(p["pid"], p.get("start"), p.get("comm"), proc)


def _apply_prlimit(step: Step, jnl: journal.Journal, proc: str, sys_root: str) -> Done:
    p = step.params
    pid = p["pid"]
    why = _process_differs(p, proc)
    if why:
        return _skip(step, why)
    old, new = rlimit.read(pid), rlimit.Limits(*p["new"])
    if old == new:
        return Done(step.target, "already set", new.text())
    intent = jnl.intent("prlimit", target=f"pid {pid} nofile", pid=pid, start=p["start"],
                        comm=p.get("comm"), old=[old.soft, old.hard], new=[new.soft, new.hard],
                        finding=step.finding)
    why = _process_differs(p, proc)  # the pause above is long enough for a pid to be reused
    if why:
        return _skip(step, why)
    rlimit.write(pid, new)
    jnl.done(intent)
    detail = f"{old.text()} -> {new.text()}"
    return Done(step.target, "set", detail + (f"; {step.note}" if step.note else ""))


def _apply_keepalive(step: Step, jnl: journal.Journal, proc: str, sys_root: str) -> Done:
    p = step.params
    pid = p["pid"]
    why = _process_differs(p, proc)
    if why:
        return _skip(step, why)

    def before_set(r: retrofit.SocketResult) -> dict:
        assert r.before is not None and r.after is not None  # set only after reading both
        return jnl.intent("keepalive", target=f"pid {pid} fd {r.fd}", pid=pid,
                          start=p["start"], comm=p.get("comm"), fd=r.fd, inode=r.sock.inode,
                          old=r.before.to_dict(), new=r.after.to_dict(), finding=step.finding)

    results = retrofit.retrofit(pid, p["targets"], p["settings"], apply=True,
                                start=p["start"], before_set=before_set, after_set=jnl.done)
    gone = [r for r in results if r.result == "skipped" and r.note.startswith("pid ")]
    if gone and len(gone) == len(results):
        return _skip(step, gone[0].note)
    failed = [r for r in results if r.result == "failed"]
    if failed:
        raise OSError(errno.EIO, f"fd {failed[0].fd}: {failed[0].note}")
    count = sum(r.result == "set" for r in results)
    return Done(step.target, "set", f"{count} sockets now {step.new}")


def _apply_kill(step: Step, jnl: journal.Journal, proc: str, sys_root: str) -> Done:
    p = step.params
    for holder in p.get("holders", ()):  # the processes the finding was about
        why = identity.differs(holder["pid"], holder.get("start"), holder.get("comm"), proc)
        if why:
            return _skip(step, why)
    with netns.pinned(namespace.find(step.netns, proc)) as space:
        why = namespace.differs(space, p.get("netns_inode"), p.get("netns_cookie"), proc)
        if why:
            return _skip(step, why)
        intent = jnl.intent("kill", target=step.target, netns=step.netns,
                            **namespace.identity(space, proc),
                            old=f"{len(p['sockets'])} sockets", new="destroyed",
                            finding=step.finding)
        outcomes = destroy.destroy(p["sockets"], {step.netns: space}, proc)
    killed = [o for o in outcomes if o.result == "killed"]
    jnl.done(intent, killed=[f"{o.sock.local_addr}:{o.sock.local_port} -> "
                             f"{o.sock.peer_addr}:{o.sock.peer_port}" for o in killed])
    bad = [o for o in outcomes if o.result not in destroy.DONE]
    if bad:
        raise OSError(bad[0].errno, f"{bad[0].result}: {bad[0].reason}")
    return Done(step.target, "set", f"{len(killed)} sockets destroyed; their owners' fds stay "
                                    "open until they close them")


_APPLY = {"sysctl": _apply_sysctl, "prlimit": _apply_prlimit,
          "keepalive": _apply_keepalive, "kill": _apply_kill}


def persist_steps(steps: list[Step], path: str, jnl: journal.Journal) -> Done:
    """Write the host's sysctl steps (changed or already set) into the sysctl.d file."""
    chosen = [s for s in steps if s.action == "sysctl" and s.status in ("change", "already set")
              and s.netns == "host"]
    old_text = persist.read(path)
    values = persist.parse(old_text or "")
    reasons = {}
    for s in chosen:
        values[s.target] = s.params["value"]
        reasons[s.target] = f"{s.finding}: {s.reason}"
    text = persist.render(values, reasons)
    if old_text is not None and persist.parse(old_text) == values:
        return Done(path, "already set", f"{len(values)} keys")
    backup = persist.backup_path(path) if old_text is not None else None
    intent = jnl.intent("file", target=path, old=old_text, new=text, backup=backup)
    persist.write(path, text)
    jnl.done(intent)
    return Done(path, "set", f"{len(chosen)} keys written" +
                (f"; previous file kept as {backup}" if backup else ""))


def rollback(path: str, jnl: journal.Journal, proc: str = "/proc",
             sys_root: str = sysctl.PROC_SYS) -> list[Done]:
    """Undo every pending change, newest first; a change made since by someone else stays.

    An intent not marked done may or may not have been carried out: each undo
    compares the current value with the old and the new one, so both cases
    come out right ("never made" when the old value is still there).
    """
    done = []
    for entry in journal.pending(path):
        try:
            outcome, detail = _UNDO[entry["kind"]](entry, proc, sys_root)
        except KeyError as exc:
            done.append(Done(str(entry.get("target", entry["id"])), "failed",
                             f"journal line {entry['id']} lacks {exc}"))
            continue
        except ProcessGone as exc:
            outcome, detail = "gone", f"{exc}; left alone"
        except (fsio.UnsafePath, fsio.WriteFailed) as exc:  # kept pending: try again later
            done.append(Done(entry["target"], "failed", str(exc)))
            continue
        except OSError as exc:
            done.append(Done(entry["target"], "failed", _oserror(exc)))
            continue
        except HalfopenError as exc:
            outcome, detail = "gone", str(exc)
        if outcome == "already set" and not entry["_done"]:
            outcome = "never made"  # the run stopped between the intent and the change
        if outcome != "left alone":
            jnl.record("undo", undoes=entry["id"], target=entry["target"], outcome=outcome)
        done.append(Done(entry["target"], outcome, detail))
    return done


def _undo_sysctl(e: dict, proc: str, sys_root: str) -> tuple[str, str]:
    with netns.pinned(namespace.find(e.get("netns", "host"), proc)) as space:
        why = namespace.differs(space, e.get("netns_inode"), e.get("netns_cookie"), proc)
        if why:
            return "gone", why + "; left alone (the namespace changed is gone)"
        now = sysctl.read(e["target"], space, sys_root)
        if now == e["old"]:
            return "already set", now
        if now != e["new"]:
            return "left alone", f"changed since by someone else: now {now}, halfopen set {e['new']}"
        sysctl.write(e["target"], e["old"], space, sys_root)
    return "restored", f"{now} -> {e['old']}"


def _same_process(e: dict, proc: str) -> None:
    why = identity.differs(e["pid"], e["start"], e.get("comm"), proc)
    if why:
        raise ProcessGone(e["pid"], why)


def _undo_prlimit(e: dict, proc: str, sys_root: str) -> tuple[str, str]:
    _same_process(e, proc)
    now, old, new = rlimit.read(e["pid"]), rlimit.Limits(*e["old"]), rlimit.Limits(*e["new"])
    if now == old:
        return "already set", now.text()
    if now != new:
        return "left alone", f"changed since: now {now.text()}, halfopen set {new.text()}"
    rlimit.write(e["pid"], old)
    return "restored", f"{now.text()} -> {old.text()}"


def _undo_keepalive(e: dict, proc: str, sys_root: str) -> tuple[str, str]:
    _same_process(e, proc)
    old = Keepalive(**e["old"])
    return retrofit.restore(e["pid"], e["fd"], e["inode"], old, start=e["start"]), old.text()


def _undo_file(e: dict, proc: str, sys_root: str) -> tuple[str, str]:
    now = persist.read(e["target"])
    if now == e["old"]:
        return "already set", ""
    if now != e["new"]:
        return "left alone", "the file was edited since"
    return persist.restore(e["target"], e["old"]), ""


def _undo_kill(e: dict, proc: str, sys_root: str) -> tuple[str, str]:
    return "cannot undo", "a destroyed connection cannot be brought back"


_UNDO = {"sysctl": _undo_sysctl, "prlimit": _undo_prlimit, "keepalive": _undo_keepalive,
         "file": _undo_file, "kill": _undo_kill}
