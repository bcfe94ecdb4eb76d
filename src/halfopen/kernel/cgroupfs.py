"""The cgroup2 hierarchy through a mount of our own, in a mount namespace of our own.

`ip netns exec` (and `ss -N`) run their command in a new mount namespace with a
fresh sysfs on /sys, where the cgroup2 mount (/sys/fs/cgroup or
/sys/fs/cgroup/unified) no longer exists: ss then finds no cgroup2 in
/proc/mounts and refuses every `cgroup` word. iproute2's answer elsewhere is to
mount cgroup2 itself (lib/fs.c find_cgroup2_mount(), at /var/run/cgroup2 in the
caller's namespace). Here a forked child unshares its mount namespace, makes
every mount in it private, mounts cgroup2 over /sys/fs/cgroup there and stats
one path: the mount dies with the child and nothing outside it changes. The
hierarchy seen is the one of the caller's cgroup namespace, as a mount made by
the caller would show.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct

from halfopen.records import record

CLONE_NEWNS = 0x00020000  # include/uapi/linux/sched.h
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8  # include/uapi/linux/mount.h
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
TARGET = "/sys/fs/cgroup"  # exists in every sysfs of a kernel with cgroups
# the child's answer: stage (0 done), errno, mount root's st_dev, path's st_ino, st_dev, st_mode
_ANSWER = struct.Struct("=iiQQQI")
_STAGES = {1: "unshare(CLONE_NEWNS)", 2: "making the mounts private", 3: "mount cgroup2",
           4: "stat"}

_libc = ctypes.CDLL(None, use_errno=True)


@record(frozen=True)
class CgroupDir:
    """What stat() says of a path under the private mount, and of the mount's root."""

    ino: int  # the cgroup's id on 64-bit kernels (fs/kernfs kernfs_id_ino)
    dev: int
    is_dir: bool
    root_dev: int  # the cgroup2 file system's st_dev: a path on another one is not a cgroup


class MountError(OSError):
    """The private mount could not be made (no CAP_SYS_ADMIN, no cgroup2 in the kernel)."""


def stat_private(rel: str, target: str = TARGET) -> CgroupDir:
    """stat() of `rel` (relative to the cgroup2 root) under a private cgroup2 mount.

    Raises MountError when the mount cannot be made, OSError (ENOENT ...) when
    the path cannot be stat'ed.
    """
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # the child: only syscalls, then _exit (no locks, no cleanup handlers)
        answer = _ANSWER.pack(4, errno.EIO, 0, 0, 0, 0)
        try:
            os.close(read_end)
            answer = _in_child(os.fsencode(rel), os.fsencode(target))
        finally:
            try:
                os.write(write_end, answer)
            finally:
                os._exit(0)
    os.close(write_end)
    try:
        data = b""
        while len(data) < _ANSWER.size:
            chunk = os.read(read_end, _ANSWER.size - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    if len(data) != _ANSWER.size:
        raise MountError(errno.EIO, "the child stating the cgroup died")
    stage, err, root_dev, ino, dev, mode = _ANSWER.unpack(data)
    if stage == 4:
        raise OSError(err, os.strerror(err), rel)
    if stage:
        raise MountError(err, f"{_STAGES[stage]}: {os.strerror(err)}")
    return CgroupDir(ino, dev, stat.S_ISDIR(mode), root_dev)


def _in_child(rel: bytes, target: bytes) -> bytes:
    if _libc.unshare(CLONE_NEWNS) != 0:
        return _ANSWER.pack(1, ctypes.get_errno(), 0, 0, 0, 0)
    # MS_PRIVATE first: the mount below must not propagate to the namespace we came from
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return _ANSWER.pack(2, ctypes.get_errno(), 0, 0, 0, 0)
    if _libc.mount(b"cgroup2", target, b"cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   None) != 0:
        return _ANSWER.pack(3, ctypes.get_errno(), 0, 0, 0, 0)
    try:
        root = os.stat(target)
        st = os.stat(os.path.join(target, rel), follow_symlinks=False)
    except OSError as exc:
        return _ANSWER.pack(4, exc.errno or errno.EIO, 0, 0, 0, 0)
    return _ANSWER.pack(0, 0, root.st_dev, st.st_ino, st.st_dev, st.st_mode)
