"""Files root reads on a user's word and files root writes: never through a
symlink, never a FIFO or a device, never half-written.

Every file halfopen writes (report --html, fix --persist and its backup,
doctor --save-snapshot, the journal, the watch history) and every file a user
can name or plant that it reads (the journal, the history, --findings,
--snapshot, --middlebox-file, --web.config.file, the sysctl.d file) goes
through here:

    read_file      the one reader: lstat must show a regular file (a FIFO
                   would block the open, a device must not be opened at all),
                   then open O_NONBLOCK|O_NOFOLLOW|O_NOCTTY, fstat the same
                   regular file, at most `limit` bytes
    write_atomic   a new file under a random name in the target directory,
                   created O_CREAT|O_EXCL|O_NOFOLLOW (nothing planted there
                   can be followed), written, fsync'ed, renamed over the
                   target (rename(2) replaces a name, it never follows one),
                   and the directory fsync'ed.
    backup         the old file's bytes, read as above from a file owned by
                   root (or us) with one link, written to FILE.bak the same
                   way with a fixed mode: never the old file's (a planted
                   setuid binary must not come back as a root-owned one).
    open_append    an append-only file (the journal): O_APPEND|O_NOFOLLOW|
                   O_NONBLOCK, a regular file owned by us with one link, mode
                   0600, in a directory made 0700.

A symlink, a FIFO, a device, a socket or a directory where a file should be
is refused with one line (UnsafePath, exit 64) before anything is read or
written; errors name the file and what is wrong, never its contents.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Optional, Union

from .errors import HalfopenError, UsageError

_TRIES = 16  # random names are 64 bits: a clash means someone plants them on purpose


class UnsafePath(UsageError):
    """The target is a symlink or not a regular file: refused, nothing written."""


class WriteFailed(HalfopenError):
    """The kernel refused a write (ENOSPC, EROFS, EACCES ...); the target is unchanged."""


class ReadFailed(UsageError):
    """A file named to be read cannot be (absent, EACCES, EIO, too large): exit 64."""


# O_NONBLOCK: a FIFO swapped in after the lstat opens at once instead of waiting
# for a writer; O_NOCTTY: a terminal never becomes ours; O_NOFOLLOW: no symlink
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink"))


def kind(mode: int) -> str:
    """What a file is, in words: 'a FIFO', 'a regular file' ...

    >>> kind(stat.S_IFIFO | 0o644), kind(stat.S_IFREG | 0o600)
    ('a FIFO', 'a regular file')
    """
    return next((word for test, word in _KINDS if test(mode)), "a regular file")


def _refuse(verb: str, path: str, st: os.stat_result) -> None:
    """UnsafePath unless `st` is a regular file (a symlink's line names its target)."""
    if stat.S_ISLNK(st.st_mode):
        try:
            to = f" (to {os.readlink(path)})"
        except OSError:
            to = ""
        raise UnsafePath(f"refusing to {verb} {path}: it is a symlink{to}; halfopen never "
                         f"{verb}s through a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"refusing to {verb} {path}: it is {kind(st.st_mode)}, not a "
                         "regular file")


def check_target(path: str) -> Optional[os.stat_result]:
    """The target's lstat, None if absent; UnsafePath if it is a symlink or not a file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ENOTDIR, EACCES on a directory above it
        raise WriteFailed(f"cannot write {path}: {exc.strerror}") from None
    _refuse("write", path, st)
    return st


def check_ours(st: os.stat_result, path: str, verb: str) -> None:
    """UnsafePath unless the file is owned by root or by us and has one link.

    A file another user owns, or a hard link to one, is theirs to change at
    any time: root must not copy it (backup), append to it or replace it.
    """
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafePath(f"refusing to {verb} {path}: owned by uid {st.st_uid}, not by root; "
                         "remove it or make it root's")
    if st.st_nlink != 1:
        raise UnsafePath(f"refusing to {verb} {path}: it has {st.st_nlink} hard links")


def check_replaceable(path: str) -> Optional[os.stat_result]:
    """check_target, and an existing target must be root's (or ours) with one link."""
    st = check_target(path)
    if st is not None:
        check_ours(st, path, "replace")
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
        tmp = f".{name}.{os.urandom(8).hex()}.tmp"  # secrets.token_hex, without its imports
        try:
            return tmp, os.open(tmp, flags, mode & 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            raise WriteFailed(f"cannot write {path}: {exc.strerror}") from None
    raise WriteFailed(f"cannot write {path}: {_TRIES} random temporary names were taken")


def open_regular(path: str, what: str = "") -> Optional[int]:
    """A read-only fd on `path` if it is a regular file; None if it does not exist.

    lstat first, so a FIFO (whose open would wait for a writer) or a device
    (whose open may do something: a tape rewinds, a watchdog arms) is refused
    without being opened; the open is then O_NONBLOCK|O_NOFOLLOW and fstat must
    show the same regular file (something swapped in meanwhile is refused too).
    """
    label = f"{what} {path}" if what else path
    if "\0" in path:
        raise UsageError(f"bad {what or 'file'} path {path!r}: contains a NUL byte")
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReadFailed(f"cannot read {label}: {exc.strerror}") from None
    _refuse("read", label, before)
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symlink or a socket swapped in
            raise UnsafePath(f"refusing to read {label}: it was replaced by something "
                             "that is not a regular file") from None
        raise ReadFailed(f"cannot read {label}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise UnsafePath(f"refusing to read {label}: it was replaced while opening it")
    return fd


def read_fd(fd: int, label: str, limit: int) -> bytes:
    """At most `limit` bytes of an open regular file; ReadFailed past it. Closes fd."""
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ReadFailed(f"{label} is {size:,} bytes: over the {limit:,}-byte limit")
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise ReadFailed(f"cannot read {label}: {exc.strerror}") from None
    if len(data) > limit:  # it grew while we read it
        raise ReadFailed(f"{label} is over the {limit:,}-byte limit")
    return data


def read_file(path: str, what: str = "", limit: int = 16 << 20,
              missing_ok: bool = False) -> Optional[bytes]:
    """A regular file's bytes, at most `limit`; None if absent and missing_ok.

    Refused in one line (exit 64): a symlink, a FIFO, a device, a socket, a
    directory, a file over the limit, one that cannot be read. The message
    names the file, never a byte of it.
    """
    fd = open_regular(path, what)
    label = f"{what} {path}" if what else path
    if fd is None:
        if missing_ok:
            return None
        raise ReadFailed(f"cannot read {label}: no such file")
    return read_fd(fd, label, limit)


def read_text(path: str, what: str, limit: int) -> str:
    """read_file, decoded as strict UTF-8 (the error gives the offset, not the bytes)."""
    data = read_file(path, what, limit)
    assert data is not None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadFailed(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def backup(path: str, suffix: str = ".bak", mode: int = 0o600) -> Optional[str]:
    """Copy `path` to PATH.bak, root's and `mode`; None when there is no file to keep.

    The copy never takes the old file's mode: a planted setuid binary copied
    with its mode by root would be a root-owned setuid binary. A file not owned
    by root (or us), or with other hard links, is refused before anything is
    copied: someone else controls what it holds.
    """
    fd = open_regular(path)
    if fd is None:
        return None
    try:
        check_ours(os.fstat(fd), path, "back up")
    except BaseException:
        os.close(fd)
        raise
    old = read_fd(fd, path, 16 << 20)
    target = path + suffix
    write_atomic(target, old, mode=mode)
    return target


def open_append(path: str, mode: int = 0o600, dir_mode: int = 0o700,
                flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """An fd to append to `path`: created 0600 if absent, refused unless it is a
    regular file with one link owned by us (a planted hard link or symlink to
    /etc/shadow would make us write there). flags=os.O_RDWR for a database."""
    directory = os.path.dirname(os.path.abspath(path))
    check_target(path)  # a symlink, FIFO or device is refused before any open
    try:
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
        # O_NONBLOCK: a FIFO swapped in after the check fails (ENXIO) or opens at
        # once, and check_owned refuses it, instead of blocking for a reader
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_CLOEXEC, mode)
    except OSError as exc:
        # EACCES too: in a sticky directory (/tmp) the kernel refuses O_CREAT on a
        # symlink or FIFO of another user (may_create_in_sticky) before O_NOFOLLOW
        # says ELOOP; the lstat tells which it was
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EACCES):
            check_target(path)
        raise WriteFailed(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.set_blocking(fd, True)
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
        raise UnsafePath(f"refusing to write {path}: it is {kind(st.st_mode)}, not a "
                         "regular file")
    if st.st_uid != os.geteuid():
        raise UnsafePath(f"refusing to write {path}: owned by uid {st.st_uid}, not by us "
                         f"(uid {os.geteuid()})")
    if st.st_nlink != 1:
        raise UnsafePath(f"refusing to write {path}: it has {st.st_nlink} hard links")
    return st
