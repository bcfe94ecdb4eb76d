"""kernel: policy-free kernel access, below collect (docs/design.md, "Pieces").

    netlink.py           the netlink socket: requests, multipart replies, errors
    sock_diag.py         inet_diag requests: the dump and SOCK_DESTROY (uapi inet_diag.h)
    procfs.py            /proc readers: pids, comm and start time (one stat read), status, cgroup, ns
    current_identity.py  a process's and a namespace's identity now (start time, SO_NETNS_COOKIE)
    openat2.py           openat2(2) with RESOLVE_IN_ROOT, for files inside a process's root
    pidfd.py             pidfd_open / pidfd_getfd: a duplicate of another process's fd
    sockopt.py           a TCP socket's keepalive options: read, set, release
    cgroupfs.py          a path's cgroup id under a private cgroup2 mount
    tracefs.py           tracefs: mount, private instances, event formats, ring-buffer pages

Failures are OSError with the kernel's errno; the caller says what they mean.
"""

from __future__ import annotations
