"""Stamp findings with who they are about: process start time, namespace cookie.

A finding names a pid and a namespace label; both numbers and names are
reused. The doctor adds to each live finding's subject what does not repeat:
`start_time` (field 22 of /proc/PID/stat) next to pid and comm, and
`netns_cookie` (SO_NETNS_COOKIE) with `netns_inode` next to netns. `halfopen
fix` compares them before every action. A process that started after the
snapshot was taken is not the one diagnosed: its pid gets no start time, and
fix then refuses to act on it.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

from ..errors import HalfopenError
from ..kernel import current_identity
from ..kernel import proc as procfs
from ..model.finding import Finding
from . import netns


def _epoch(iso: str) -> Optional[float]:
    try:
        return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def stamp(findings: list[Finding], taken_at: str, proc: str = "/proc") -> None:
    """Add identity fields to each finding's subject, in place."""
    taken = _epoch(taken_at)
    spaces: dict[str, dict[str, Any]] = {}
    for f in findings:
        subject = f.subject
        pid = subject.get("pid")
        if isinstance(pid, int) and not isinstance(pid, bool) and "start_time" not in subject:
            now = current_identity.process(pid, proc)
            # one clock tick of slack: starttime is rounded down to a tick
            started = now.start_time if now is not None else None
            if now is not None and started is not None and (
                    taken is None or procfs.started_epoch(started, proc) <= taken + 1):
                subject["start_time"] = now.start_time
                subject.setdefault("comm", now.comm)
            else:
                subject["start_time"] = None  # not the process diagnosed: fix will refuse
        label = str(subject.get("netns", netns.HOST))
        if "netns_cookie" not in subject:
            if label not in spaces:
                spaces[label] = _netns_identity(label, proc)
            subject.update(spaces[label])


def _netns_identity(label: str, proc: str) -> dict[str, Any]:
    try:
        if label == netns.HOST:
            space = netns.current(proc)
        elif label.startswith("net:["):
            inode = int(label[5:-1])
            space = next(s for s in netns.all_namespaces(proc) if s.inode == inode)
        else:
            space = netns.named(label)
        return {"netns_inode": space.inode, "netns_cookie": netns.cookie(space, proc)}
    except (OSError, HalfopenError, ValueError, StopIteration):
        return {}  # gone meanwhile: nothing to vouch for
