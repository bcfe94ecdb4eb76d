"""Is it still the process, the namespace, the finding was about? Facts and pure checks.

A finding records a process as (pid, start time, comm) and a namespace as
(name, inode, cookie); an action reads what runs under those numbers now
(`process_now`, `netns_now`) when it plans and again right before it
changes anything, and compares with the pure functions here, so a case file
(tests/fix/cases) can give "now" as data.

    >>> process_changed(ProcessIdentity(7, 100, "redis"), ProcessIdentity(7, 100, "redis"))
    ''
    >>> process_changed(ProcessIdentity(7, 100, "redis"), None)
    'pid 7 has exited'
    >>> netns_changed(NetnsIdentity("blue", 4026532001, 9), NetnsIdentity("blue", 4026532001, 12))
    'network namespace blue is not the one recorded (cookie 12, recorded 9): it was deleted and another took its name'
"""

from __future__ import annotations

from typing import Any, Optional

from ...collect import netns
from ...kernel import current_identity
from ...model.finding import Finding
from ...model.identity import NetnsIdentity, ProcessIdentity
from .. import namespace


def process_now(pid: int, proc: str) -> Optional[ProcessIdentity]:
    return current_identity.process(pid, proc)


def process_changed(want: ProcessIdentity, now: Optional[ProcessIdentity]) -> str:
    """'' when `now` is the process `want` records (as kernel.current_identity.differs says)."""
    if now is None:
        return f"pid {want.pid} has exited"
    if want.start_time is not None and now.start_time != want.start_time:
        return (f"pid {want.pid} is now another process ({now.comm}, started at tick "
                f"{now.start_time}; the one recorded started at tick {want.start_time})")
    if want.comm is not None and now.comm != want.comm:
        return f"pid {want.pid} is now {now.comm!r}, not {want.comm!r}"
    return ""


def not_the_finding_s(finding: Finding, want: ProcessIdentity,
                      now: Optional[ProcessIdentity]) -> str:
    """Why `now` may not be acted on for `finding`; '' when it may.

    A pid is acted on only when the finding recorded its start time (halfopen
    doctor does, diagnose.common.identify): a pid alone, from a findings file without
    `start_time` (hand-written, or older than identity) or named only in a
    kill filter, may since belong to any process, so it is skipped like a
    pid whose start time changed.
    """
    pid = want.pid
    if want.start_time is None:
        return (f"pid {pid}: the finding records no start_time for it, so it cannot be "
                "told from a later process that reused the pid; run `halfopen doctor "
                "--json` again for a findings file that does")
    return process_changed(want, now)


def netns_now(space: netns.Namespace, proc: str) -> NetnsIdentity:
    return NetnsIdentity(space.name, space.inode, netns.cookie(space, proc))


def named(n: NetnsIdentity, name: str) -> NetnsIdentity:
    """`n` under the name the finding used (a journal line keeps that name)."""
    return NetnsIdentity(name, n.inode, n.cookie)


def netns_changed(recorded: NetnsIdentity, now: NetnsIdentity) -> str:
    """'' when `now` is the namespace recorded (or nothing was recorded); else why not.

    The cookie decides when both have one (the kernel never reuses it); the
    inode otherwise (before Linux 5.14), though inodes are reused at once.
    """
    if recorded.cookie is not None and now.cookie is not None:
        if now.cookie == recorded.cookie:
            return ""
        return (f"network namespace {now.name} is not the one recorded (cookie "
                f"{now.cookie}, recorded {recorded.cookie}): it was deleted and another "
                "took its name")
    if recorded.inode is not None and now.inode != recorded.inode:
        return (f"network namespace {now.name} is not the one recorded (inode "
                f"{now.inode}, recorded {recorded.inode})")
    return ""


def to_apply(recorded: NetnsIdentity, now: NetnsIdentity) -> NetnsIdentity:
    """The identity a step carries to apply: the recorded one, else the one read at plan."""
    return recorded if recorded.recorded else now


def netns_fields(n: NetnsIdentity) -> dict[str, Any]:
    """A namespace as a journal line records it."""
    return {"netns": n.name, "netns_inode": n.inode, "netns_cookie": n.cookie}


def netns_from(entry: dict[str, Any]) -> NetnsIdentity:
    return NetnsIdentity(str(entry.get("netns", "host")), _int(entry.get("netns_inode")),
                         _int(entry.get("netns_cookie")))


def _int(v: Any) -> Optional[int]:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def process_of(d: Optional[dict[str, Any]]) -> Optional[ProcessIdentity]:
    """A process as facts in JSON give it ({"pid", "start_time", "comm"}); None: none runs."""
    return None if d is None else ProcessIdentity(int(d["pid"]), d.get("start_time"), d.get("comm"))


def netns_of(d: dict[str, Any]) -> NetnsIdentity:
    """A namespace as facts in JSON give it ({"name", "inode", "cookie"})."""
    return NetnsIdentity(str(d["name"]), _int(d.get("inode")), _int(d.get("cookie")))


def process_fields(p: ProcessIdentity) -> dict[str, Any]:
    """A process as a journal line records it (start and comm: the names since the first
    journals)."""
    return {"pid": p.pid, "start": p.start_time, "comm": p.comm}


def process_from(entry: dict[str, Any]) -> ProcessIdentity:
    """KeyError when the line lacks pid or start: rollback says which."""
    return ProcessIdentity(int(entry["pid"]), entry["start"], entry.get("comm"))


def find_netns(name: str, proc: str) -> netns.Namespace:
    return namespace.find(name, proc)
