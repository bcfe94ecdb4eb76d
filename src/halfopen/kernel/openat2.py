"""openat2(2) with RESOLVE_IN_ROOT: open a path as another process sees it.

Reading /proc/PID/root/etc/nginx/nginx.conf would resolve an absolute symlink
inside the container against our own root (the host's /etc); RESOLVE_IN_ROOT
makes the directory fd the root for every step, symlinks included, and
RESOLVE_NO_MAGICLINKS refuses /proc/*/fd-style jumps (fs/namei.c, Linux 5.6+).
"""

from __future__ import annotations

import ctypes
import os
import struct

SYS_OPENAT2 = 437  # the same number on x86_64 and the generic table (arm64)
RESOLVE_NO_MAGICLINKS = 0x02  # include/uapi/linux/openat2.h
RESOLVE_IN_ROOT = 0x10

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def open_in_root(root_fd: int, path: str, flags: int) -> int:
    """An fd for `path` resolved inside `root_fd`; OSError as open(2) would raise."""
    how = ctypes.create_string_buffer(struct.pack("=QQQ", flags | os.O_CLOEXEC, 0,
                                                  RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS))
    fd = _libc.syscall(SYS_OPENAT2, ctypes.c_int(root_fd), os.fsencode(path), how,
                       ctypes.c_size_t(24))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd
