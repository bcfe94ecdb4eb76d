"""RLIMIT_NOFILE of another process: read, plan, set with prlimit(2).

/proc/PID/limits is read-only; prlimit(2) is the way in. Raising the soft
limit up to the hard one is always allowed for a process we may signal;
raising the hard limit needs CAP_SYS_RESOURCE (kernel/sys.c do_prlimit), and
the hard limit cannot pass fs.nr_open. When the hard limit must move and we
cannot move it, the lasting fix is the service's own limit: a systemd drop-in
(LimitNOFILE=) or, for login sessions, /etc/security/limits.d.
"""

from __future__ import annotations

import pwd
import resource
import shlex

from halfopen.records import record

from ..collect.unit import read_system_unit
from ..kernel import procfs
from .failures import AccessDenied, ProcessGone

RESOURCES = {"nofile": resource.RLIMIT_NOFILE}
CAP_SYS_RESOURCE = 24  # include/uapi/linux/capability.h


@record(frozen=True)
class Limits:
    soft: int
    hard: int

    def text(self) -> str:
        return f"soft {self.soft}, hard {self.hard}"


def read(pid: int) -> Limits:
    try:
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    except ProcessLookupError:
        raise ProcessGone(pid) from None
    except PermissionError:
        raise AccessDenied(f"may not read the limits of pid {pid} (EPERM): prlimit(2) on "
                           "another user's process needs CAP_SYS_RESOURCE") from None
    return Limits(soft, hard)


def write(pid: int, limits: Limits) -> None:
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limits.soft, limits.hard))
    except ProcessLookupError:
        raise ProcessGone(pid) from None
    except (PermissionError, ValueError) as exc:
        raise AccessDenied(f"prlimit({pid}, NOFILE, {limits.text()}) refused (EPERM): raising "
                           "a hard limit needs CAP_SYS_RESOURCE") from exc


def start_time(pid: int, proc: str = "/proc") -> int:
    """Field 22 of /proc/PID/stat: tells a pid from a later process reusing it."""
    started = procfs.start_time(pid, proc)
    if started is None:
        raise ProcessGone(pid)
    return started


def can_raise_hard(proc: str = "/proc") -> bool:
    effective = procfs.status("self", proc).get("CapEff")
    return effective is not None and bool(int(effective, 16) >> CAP_SYS_RESOURCE & 1)


def plan(current: Limits, soft: int, hard: int | None, may_raise_hard: bool,
         ceiling: int) -> tuple[Limits, str]:
    """What to set, and a note when the wanted limit is out of reach. Never lowers.

    >>> plan(Limits(1024, 4096), 65536, None, False, 1048576)[0]
    Limits(soft=4096, hard=4096)
    >>> plan(Limits(1024, 4096), 2048, None, False, 1048576)
    (Limits(soft=2048, hard=4096), '')
    """
    hard_wanted = max(hard or 0, soft, current.hard)
    note = ""
    if hard_wanted > ceiling:
        note = f"fs.nr_open is {ceiling}: no hard limit can pass it"
        hard_wanted = ceiling
    if hard_wanted > current.hard and not may_raise_hard:
        note = (f"raising the hard limit {current.hard} -> {hard_wanted} needs CAP_SYS_RESOURCE, "
                "which this process lacks: soft raised only up to the hard limit")
        hard_wanted = current.hard
    new = Limits(max(current.soft, min(soft, hard_wanted)), hard_wanted)
    return new, note


def user_of(pid: int, proc: str = "/proc") -> str:
    try:
        uid = int(procfs.status(pid, proc)["Uid"].split()[0])
        return pwd.getpwuid(uid).pw_name
    except (OSError, KeyError):
        return "USER"


def lasting_text(pid: int, soft: int, hard: int, proc: str = "/proc") -> str:
    """The lines that raise the limit at the next start, for a person to apply.

    The unit is the system service the kernel names in the process's cgroup
    (collect.unit.read_system_unit: a name systemd accepts, or none), shell-quoted
    in the command; never made from comm, which the process chooses."""
    unit = read_system_unit(pid, proc)
    value = str(soft) if soft == hard else f"{soft}:{hard}"
    lines = []
    if unit:
        lines += [f"# /etc/systemd/system/{unit}.d/60-halfopen.conf",
                  "[Service]", f"LimitNOFILE={value}",
                  f"# then: systemctl daemon-reload && systemctl restart {shlex.quote(unit)}"]
    else:
        lines += [f"# pid {pid} runs in no system service its cgroup names; if a service "
                  "manager starts it, set in its unit:", "[Service]", f"LimitNOFILE={value}"]
    user = user_of(pid, proc)
    lines += ["# /etc/security/limits.d/60-halfopen.conf (login sessions, via pam_limits)",
              f"{user} soft nofile {soft}", f"{user} hard nofile {hard}"]
    return "\n".join(lines)
