"""A second file descriptor on another process's open file: pidfd_open + pidfd_getfd.

pidfd_getfd(2) (Linux 5.6) needs PTRACE_MODE_ATTACH_REALCREDS over the target:
the same real uid and a dumpable target, or CAP_SYS_PTRACE, and Yama's
ptrace_scope allowing it. The duplicate shares the open file description:
setsockopt on it changes the target's socket; closing it leaves theirs open;
poll() on it only looks. Failures are OSError with the kernel's errno; what
they mean to a user is the caller's to say (fix.borrowed_fds).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

# arch-independent syscall numbers (include/uapi/asm-generic/unistd.h; x86_64 too)
SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def pidfd_open(pid: int) -> int:
    fd = _libc.syscall(SYS_PIDFD_OPEN, ctypes.c_int(pid), ctypes.c_uint(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pidfd_open({pid}): {os.strerror(err)}")
    return fd


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """Our duplicate of the process's `target_fd`; OSError(EBADF) if it closed it."""
    fd = _libc.syscall(SYS_PIDFD_GETFD, ctypes.c_int(pidfd), ctypes.c_int(target_fd),
                       ctypes.c_uint(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pidfd_getfd(fd {target_fd}): {os.strerror(err)}")
    return fd


@contextlib.contextmanager
def closing_fd(fd: int) -> Iterator[int]:
    """`fd`, closed when the block ends."""
    try:
        yield fd
    finally:
        os.close(fd)


def opened(pid: int) -> contextlib.AbstractContextManager[int]:
    """A pidfd for `pid`, closed afterwards."""
    return closing_fd(pidfd_open(pid))


def borrowed(pidfd: int, target_fd: int) -> contextlib.AbstractContextManager[int]:
    """Our duplicate of the process's fd, closed afterwards (theirs stays open)."""
    return closing_fd(pidfd_getfd(pidfd, target_fd))
