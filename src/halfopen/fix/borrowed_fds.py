"""pidfd_open + pidfd_getfd (kernel.pidfd) with errors that say what to do.

The duplicate shares the open file description: setsockopt on it changes the
target's socket; closing it leaves theirs open.
"""

from __future__ import annotations

import contextlib
import errno
import os

from ..kernel import pidfd
from .failures import AccessDenied, NotSupported, ProcessGone


def _ptrace_scope() -> str:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            return f.read().strip()
    except OSError:
        return "absent"


def _raise(err: int, pid: int, what: str) -> None:
    if err == errno.ESRCH:
        raise ProcessGone(pid)
    if err in (errno.EPERM, errno.EACCES):
        raise AccessDenied(
            f"may not take fds of pid {pid} ({errno.errorcode[err]}): {what} needs ptrace "
            f"access (PTRACE_MODE_ATTACH_REALCREDS: same uid and dumpable, or "
            f"CAP_SYS_PTRACE; yama ptrace_scope={_ptrace_scope()})")
    if err in (errno.ENOSYS, errno.EOPNOTSUPP):
        raise NotSupported(f"the kernel lacks {what} (Linux 5.6 or later is needed)")
    raise OSError(err, f"{what} on pid {pid}: {os.strerror(err)}")


def pidfd_open(pid: int) -> int:
    try:
        return pidfd.pidfd_open(pid)
    except OSError as exc:
        _raise(exc.errno or 0, pid, "pidfd_open")
        raise


def pidfd_getfd(pfd: int, pid: int, target_fd: int) -> int:
    """Our duplicate of `target_fd` in the process; OSError(EBADF) if it closed it."""
    try:
        return pidfd.pidfd_getfd(pfd, target_fd)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise OSError(exc.errno, f"pid {pid} closed fd {target_fd}") from None
        _raise(exc.errno or 0, pid, "pidfd_getfd")
        raise


def opened(pid: int) -> contextlib.AbstractContextManager[int]:
    """A pidfd for `pid`, closed afterwards."""
    return pidfd.closing_fd(pidfd_open(pid))
