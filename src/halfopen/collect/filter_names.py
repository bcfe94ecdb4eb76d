"""The names a filter holds, looked up: host names in /etc/hosts, cgroup paths.

ss resolves them while parsing (misc/ss.c get_dns_host, lib/fs.c
get_cgroup2_id); halfopen parses purely (model.filter) and looks them up here,
once per command, before the filter is bound to each namespace.

    >>> host_addresses("localhost", None, "/dev/null")
    ()
"""

from __future__ import annotations

import ipaddress
import os
import stat
from typing import Optional

from ..errors import UsageError
from ..kernel import cgroupfs
from ..model.filter import Filter
from ..model.filter_values import Network

HOSTS_FILE = "/etc/hosts"
MOUNTS_FILE = "/proc/self/mounts"


def look_up(flt: Filter, hosts_file: str = HOSTS_FILE, mounts_file: str = MOUNTS_FILE,
            private_mount: bool = True
            ) -> tuple[dict[tuple[str, Optional[int]], tuple[Network, ...]], dict[str, int]]:
    """Addresses of each host name and the id of each cgroup path `flt` names."""
    names, paths = flt.names()
    hosts = {(name, fam): host_addresses(name, fam, hosts_file) for name, fam in names}
    return hosts, {path: cgroup_id(path, mounts_file, private_mount) for path in paths}


def host_addresses(name: str, family: Optional[int], hosts_file: str = HOSTS_FILE
                   ) -> tuple[Network, ...]:
    """gethostbyname2() for AF_INET, then AF_INET6, from the hosts file only.

    ss would also ask DNS; a filter here never sends a query. Every line
    naming `name` counts (glibc's "multi on").
    """
    try:
        with open(hosts_file, encoding="utf-8", errors="replace") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return ()
    found: list[Network] = []
    for want in (4, 6):
        if family not in (None, want):
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if len(words) < 2 or name.lower() not in (w.lower() for w in words[1:]):
                continue
            try:
                ip = ipaddress.ip_address(words[0])
            except ValueError:
                continue
            net = ipaddress.ip_network(ip)
            if ip.version == want and net not in found:
                found.append(net)
    return tuple(found)


def cgroup_id(path: str, mounts_file: str = MOUNTS_FILE, private_mount: bool = True) -> int:
    """`cgroup PATH` -> the cgroup's id, as lib/fs.c get_cgroup2_id() finds it.

    PATH is relative to the cgroup2 mount (leading '/'s dropped, as ss drops
    them). ss asks name_to_handle_at() for the kernfs id; on 64-bit kernels
    that id is the directory's inode number (fs/kernfs kernfs_id_ino), which
    stat() gives. The mount is the first cgroup2 in this mount namespace's
    mounts, as ss finds it; when there is none (`ip netns exec` replaces /sys),
    a private mount made for the lookup (kernel.cgroupfs), where ss gives up.
    Unlike ss, PATH is never read from the current directory first, and a path
    that leaves the cgroup2 file system (`/../..`) is refused.
    """
    shown = ascii(path) if not path.isprintable() else repr(path)
    rel = path.lstrip("/")
    mount = _cgroup2_mount(mounts_file)
    try:
        if mount is not None:
            where = mount
            root, st = os.stat(mount), os.stat(os.path.join(mount, rel))
            found = cgroupfs.CgroupDir(st.st_ino, st.st_dev, stat.S_ISDIR(st.st_mode),
                                       root.st_dev)
        elif private_mount:
            where = "the cgroup2 hierarchy (mounted privately: this mount namespace has none)"
            found = cgroupfs.stat_private(rel)
        else:
            raise UsageError("cgroup: no cgroup2 file system is mounted")
    except cgroupfs.MountError as exc:
        raise UsageError(f"cgroup: this mount namespace has no cgroup2 mount and a private one "
                         f"failed ({exc.strerror}); run outside `ip netns exec`, e.g. "
                         "`halfopen sockets --netns NAME ...`") from None
    except (OSError, ValueError, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise UsageError(f"bad cgroup {shown}: {why} under {where}") from None
    if not found.is_dir or found.dev != found.root_dev:
        raise UsageError(f"bad cgroup {shown}: not a cgroup directory under {where}")
    return found.ino


def _cgroup2_mount(mounts_file: str) -> Optional[str]:
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split()
                if len(words) >= 3 and words[2] == "cgroup2":
                    return words[1].replace("\\040", " ")
    except OSError:
        return None
    return None
