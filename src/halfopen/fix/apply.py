"""Carry out a plan's steps with a write-ahead journal, and roll the journal back.

Each change is: its intent journaled (fsync'ed), the identity of its process
or namespace re-checked, the change, a "done" line. An intent that cannot be
written stops the run before its change (journal.JournalError, exit 2). A
process or namespace that is no longer the one planned (a reused pid, a
namespace deleted and recreated under its name) is skipped with one line.
The first failure stops the run: the journal then holds what changed, and
`rollback` restores it. What each change and each undo is, is its action's
(fix.actions); this module runs them in order and turns errors into results.
"""

from __future__ import annotations

import errno

from .. import fsio
from ..errors import HalfopenError
from . import journal
from .actions import BY_KIND, FIXES, PERSIST, Done, Host, Step
from .failures import ProcessGone
from .sysctl import PROC_SYS

__all__ = ["Done", "Failed", "apply", "persist_steps", "rollback"]


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
          sys_root: str = PROC_SYS) -> list[Done]:
    """Apply each "change" step in order; raise Failed at the first failure.

    journal.JournalError passes through: the change it was about is not made.
    """
    host = Host(proc, sys_root)
    done: list[Done] = []
    for step in steps:
        if step.status != "change":
            done.append(Done(step.target, step.status, step.note))
            continue
        try:
            done.append(FIXES[step.action].apply(step, jnl, host))
        except journal.JournalError as exc:
            if exc.changed or any(d.outcome == "set" for d in done):
                raise Failed(str(exc), done) from exc
            raise  # nothing was changed: the one line, exit 2
        except OSError as exc:
            raise Failed(f"{step.action} {step.target}: {_oserror(exc)}", done) from exc
        except HalfopenError as exc:
            raise Failed(f"{step.action} {step.target}: {exc}", done) from exc
    return done


def persist_steps(steps: list[Step], path: str, jnl: journal.Journal) -> Done:
    """Write the host's sysctl steps (changed or already set) into the sysctl.d file."""
    return PERSIST.apply(PERSIST.plan(steps, path), jnl, Host())


def rollback(path: str, jnl: journal.Journal, proc: str = "/proc",
             sys_root: str = PROC_SYS) -> list[Done]:
    """Undo every pending change, newest first; a change made since by someone else stays.

    An intent not marked done may or may not have been carried out: each undo
    compares the current value with the old and the new one, so both cases
    come out right ("never made" when the old value is still there). A line
    that failed stays pending, to be tried again.
    """
    host = Host(proc, sys_root)
    done = []
    for entry in journal.pending(path):
        result = _undo(entry, host)
        if result.outcome == "already set" and not entry["_done"]:
            result.outcome = "never made"  # the run stopped between the intent and the change
        if result.outcome not in ("left alone", "failed"):
            jnl.record("undo", undoes=entry["id"], target=entry["target"], outcome=result.outcome)
        done.append(result)
    return done


def _undo(entry: dict, host: Host) -> Done:
    """The undo of one journal line by the action its "kind" names."""
    try:
        outcome, detail = BY_KIND[entry["kind"]].undo(entry, host)
    except KeyError as exc:
        return Done(str(entry.get("target", entry["id"])), "failed",
                    f"journal line {entry['id']} lacks {exc}")
    except ProcessGone as exc:
        outcome, detail = "gone", f"{exc}; left alone"
    except (fsio.UnsafePath, fsio.WriteFailed) as exc:
        return Done(entry["target"], "failed", str(exc))
    except OSError as exc:
        return Done(entry["target"], "failed", _oserror(exc))
    except HalfopenError as exc:
        outcome, detail = "gone", str(exc)
    return Done(entry["target"], outcome, detail)
