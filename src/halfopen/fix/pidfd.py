"""A second file descriptor on another process's open file: pidfd_open + pidfd_getfd.

pidfd_getfd(2) (Linux 5.6) needs PTRACE_MODE_ATTACH_REALCREDS over the target:
the same real uid and a dumpable target, or CAP_SYS_PTRACE, and Yama's
ptrace_scope allowing it. The duplicate shares the open file description:
setsockopt on it changes the target's socket; closing it leaves theirs open.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterator

from .errors import AccessDenied, NotSupported, ProcessGone

# arch-independent syscall numbers (include/uapi/asm-generic/unistd.h; x86_64 too)
SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


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
    fd = _libc.syscall(SYS_PIDFD_OPEN, ctypes.c_int(pid), ctypes.c_uint(0))
    if fd < 0:
        _raise(ctypes.get_errno(), pid, "pidfd_open")
    return fd


def pidfd_getfd(pidfd: int, pid: int, target_fd: int) -> int:
    """Our duplicate of `target_fd` in the process; OSError(EBADF) if it closed it."""
    fd = _libc.syscall(SYS_PIDFD_GETFD, ctypes.c_int(pidfd), ctypes.c_int(target_fd),
                       ctypes.c_uint(0))
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.EBADF:
            raise OSError(err, f"pid {pid} closed fd {target_fd}")
        _raise(err, pid, "pidfd_getfd")
    return fd


@contextlib.contextmanager
def opened(pid: int) -> Iterator[int]:
    """A pidfd for `pid`, closed afterwards."""
    fd = pidfd_open(pid)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def borrowed(pidfd: int, pid: int, target_fd: int) -> Iterator[int]:
    """Our duplicate of the process's fd, closed afterwards (theirs stays open)."""
    fd = pidfd_getfd(pidfd, pid, target_fd)
    try:
        yield fd
    finally:
        os.close(fd)
