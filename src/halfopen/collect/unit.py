"""The systemd service a process runs in, from /proc/PID/cgroup.

systemd puts every service's processes in a cgroup named after the unit
(`/system.slice/nginx.service`), so the unit survives the restarts that
change the pid: the exporter keys its per-process series by comm and unit.
/proc/PID/cgroup has one line per hierarchy, `ID:CONTROLLERS:PATH`
(kernel/cgroup/cgroup.c, proc_cgroup_show): `0::PATH` is the unified (v2)
hierarchy, `N:name=systemd:PATH` systemd's own v1 hierarchy on hybrid and
legacy hosts. A service may create sub-cgroups below its own (Delegate=),
and user services sit below `user@UID.service`: the innermost `.service`
component names the unit.
"""

from __future__ import annotations

from ..kernel import proc as procfs

V1_SYSTEMD = "name=systemd"


def unit_of_path(path: str) -> str:
    """The innermost `.service` component of a cgroup path, or ''.

    >>> unit_of_path("/system.slice/nginx.service"), unit_of_path("/system.slice/docker-3f4e.scope")
    ('nginx.service', '')
    >>> unit_of_path("/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service")
    'dbus.service'
    >>> unit_of_path("/system.slice/postgresql@15-main.service/worker")
    'postgresql@15-main.service'
    """
    for part in reversed(path.split("/")):
        if part.endswith(".service") and len(part) > len(".service"):
            return part
    return ""


def parse_unit(text: str) -> str:
    """The unit named by /proc/PID/cgroup's text: the v2 line first, then name=systemd.

    >>> parse_unit("9:name=systemd:/system.slice/cron.service\\n4:memory:/x\\n0::/system.slice/cron.service\\n")
    'cron.service'
    >>> parse_unit("0::/\\n"), parse_unit("1:name=systemd:/system.slice/ssh.service\\n0::/\\n")
    ('', 'ssh.service')
    """
    v2 = v1 = ""
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            v2 = unit_of_path(path)
        elif V1_SYSTEMD in controllers.split(","):
            v1 = unit_of_path(path)
    return v2 or v1


def read_unit(pid: int, proc: str = "/proc") -> str:
    """The systemd service of a process, '' if none or the process is gone."""
    try:
        return parse_unit(procfs.cgroup(pid, proc))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
