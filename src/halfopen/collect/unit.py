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

import re

from ..kernel import procfs

V1_SYSTEMD = "name=systemd"

# A unit name as systemd allows it (src/basic/unit-name.c: letters, digits,
# ":-_.\\", one "@" for a template instance; 255 bytes at most).
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.service")
UNIT_NAME_MAX = 255


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


def system_unit_of_path(path: str) -> str:
    """The system service a cgroup path belongs to, '' when it is none.

    What a fix may tell root to edit (`systemctl edit UNIT`): the outermost
    `.service` component, which is the cgroup systemd made for the unit; a
    service with Delegate= (and a user manager, `user@UID.service`) may name
    the cgroups below its own as it likes, so an inner component is the
    process's choice, not systemd's. A user service is not a system unit:
    ''. A name systemd would not accept (a cgroup made by hand) is ''.

    >>> system_unit_of_path("/system.slice/nginx.service"), system_unit_of_path("/")
    ('nginx.service', '')
    >>> system_unit_of_path("/system.slice/docker.service/$(sh /tmp/a).service")
    'docker.service'
    >>> system_unit_of_path("/user.slice/user-1000.slice/user@1000.service/app.slice/x.service")
    ''
    >>> system_unit_of_path("/system.slice/$(sh /tmp/a).service"), system_unit_of_path("/system.slice/getty@tty1.service")
    ('', 'getty@tty1.service')
    """
    for part in path.split("/"):
        if part.endswith(".service") and len(part) > len(".service"):
            if part.startswith("user@") or len(part) > UNIT_NAME_MAX:
                return ""
            return part if _UNIT_NAME.fullmatch(part) else ""
    return ""


def parse_system_unit(text: str) -> str:
    """The system service named by /proc/PID/cgroup's text (system_unit_of_path),
    from the v2 line, else name=systemd's.

    >>> parse_system_unit("0::/system.slice/cron.service\\n")
    'cron.service'
    >>> parse_system_unit("1:name=systemd:/system.slice/ssh.service\\n0::/\\n")
    'ssh.service'
    """
    v2 = v1 = ""
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            v2 = system_unit_of_path(path)
        elif V1_SYSTEMD in controllers.split(","):
            v1 = system_unit_of_path(path)
    return v2 or v1


def read_system_unit(pid: int, proc: str = "/proc") -> str:
    """The system service of a process from the kernel, '' if none or gone."""
    try:
        return parse_system_unit(procfs.cgroup(pid, proc, limit=65536))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def read_unit(pid: int, proc: str = "/proc") -> str:
    """The systemd service of a process, '' if none or the process is gone."""
    try:
        return parse_unit(procfs.cgroup(pid, proc))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
