"""Files written as root: never through a symlink, never half-written.

Every file halfopen writes (report --html, fix --persist and its backup,
doctor --save-snapshot, the journal, the watch history) goes through here:

    write_atomic   a new file under a random name in the target directory,
                   created O_CREAT|O_EXCL|O_NOFOLLOW (nothing planted there
                   can be followed), written, fsync'ed, renamed over the
                   target (rename(2) replaces a name, it never follows one),
                   and the directory fsync'ed.
    backup         the old file's bytes, read through O_NOFOLLOW, written to
                   FILE.bak the same way.
    open_append    an append-only file (the journal): O_APPEND|O_NOFOLLOW,
                   a regular file owned by us with one link, mode 0600, in a
                   directory made 0700.

A target that is a symlink, or not a regular file, is refused with one line
(UnsafePath, exit 64) before anything is written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from typing import Optional, Union

from .errors import HalfopenError, UsageError

_TRIES = 16  # random names are 64 bits: a clash means someone plants them on purpose


class UnsafePath(UsageError):
    """The target is a symlink or not a regular file: refused, nothing written."""


class WriteFailed(HalfopenError):
    """The kernel refused a write (ENOSPC, EROFS, EACCES ...); the target is unchanged."""


def check_target(path: str) -> Optional[os.stat_result]:
    """The target's lstat, None if absent; UnsafePath if it is a symlink or not a file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"refusing to write {path}: it is a symlink (to "
                         f"{os.readlink(path)}); halfopen never writes through a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"refusing to write {path}: not a regular file")
    return st


def write_atomic(path: str, data: Union[str, bytes], mode: int = 0o644,
                 dir_mode: int = 0o755) -> None:
    """Replace `path` with `data` in one rename; the old file stays whole on any failure."""
    check_target(path)
    directory, name = os.path.split(os.path.abspath(path))
    blob = data.encode("utf-8") if isinstance(data, str) else data
    try:
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise WriteFailed(f"cannot write {path}: {exc.strerror}") from None
    try:
        tmp, fd = _create_temp(dir_fd, name, mode, path)
        try:
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, mode)  # the umask must not loosen or tighten it
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise WriteFailed(f"cannot write {path}: {exc.strerror}") from None
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _create_temp(dir_fd: int, name: str, mode: int, path: str) -> tuple[str, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_TRIES):
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            return tmp, os.open(tmp, flags, mode & 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            raise WriteFailed(f"cannot write {path}: {exc.strerror}") from None
    raise WriteFailed(f"cannot write {path}: {_TRIES} random temporary names were taken")


def read_nofollow(path: str, limit: int = 16 << 20) -> Optional[bytes]:
    """A regular file's bytes (None if absent) without following a symlink at `path`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"refusing to read {path}: it is a symlink") from None
        raise WriteFailed(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise UnsafePath(f"refusing to read {path}: not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{path} is larger than {limit} bytes")
    return data


def backup(path: str, suffix: str = ".bak") -> Optional[str]:
    """Copy `path` to PATH.bak the same safe way; None when there is no file to keep."""
    old = read_nofollow(path)
    if old is None:
        return None
    st = os.stat(path, follow_symlinks=False)
    target = path + suffix
    write_atomic(target, old, mode=stat.S_IMODE(st.st_mode))
    return target


def open_append(path: str, mode: int = 0o600, dir_mode: int = 0o700,
                flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """An fd to append to `path`: created 0600 if absent, refused unless it is a
    regular file with one link owned by us (a planted hard link or symlink to
    /etc/shadow would make us write there). flags=os.O_RDWR for a database."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"refusing to write {path}: it is a symlink; halfopen never "
                             "writes through a symlink") from None
        raise WriteFailed(f"cannot write {path}: {exc.strerror}") from None
    try:
        check_owned(fd, path)
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_owned(fd: int, path: str) -> os.stat_result:
    """UnsafePath unless `fd` is a regular file with one link, owned by our euid."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"refusing to write {path}: not a regular file")
    if st.st_uid != os.geteuid():
        raise UnsafePath(f"refusing to write {path}: owned by uid {st.st_uid}, not by us "
                         f"(uid {os.geteuid()})")
    if st.st_nlink != 1:
        raise UnsafePath(f"refusing to write {path}: it has {st.st_nlink} hard links")
    return st
