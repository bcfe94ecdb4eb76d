"""Another server's configuration files, read as root without being turned against root.

A server's configuration is read where the server runs (nginx's in
collect.nginx_conf; haproxy's, redis's and Apache httpd's in collect.server_conf;
the reader knows nothing of any of them). Three rules:

- **Whose server.** Only a process that runs as root (real, effective, saved
  and filesystem uid 0) from a root-owned binary no one else may write is
  trusted to name its files (`untrusted()`). Any user can start a process
  named `nginx` with `-c ~/evil.conf` whose includes name root-only files: root
  must not read them on that user's word. The operator can still name a file.
- **Which files.** `ConfigFiles` opens a path inside the server's root
  (/proc/PID/root, openat2 RESOLVE_IN_ROOT), the last component O_NOFOLLOW |
  O_NONBLOCK, and reads it only if `fstat` on that fd shows a regular file
  owned by an allowed uid (root) and not writable by group or others. With
  `links` (httpd's reader: Debian's mods-enabled/ and sites-enabled/ are links),
  a last-component symlink owned by an allowed uid is followed one hop, inside
  the root, to a file that must pass the same checks.
- **How much.** One configuration, includes and all, spends at most a
  `Budget`: bytes read from disk in all, CPU and wall time, files opened,
  directives kept. Past it the walk stops (`OverBudget`) and keeps what it
  read. A file is read and parsed once a run (`cache`, keyed by its inode and
  change times), however many times it is included.

    >>> b = Budget(Limits(files=2))
    >>> b.take_file("/a"); b.take_file("/b"); b.take_file("/c")
    Traceback (most recent call last):
    ...
    halfopen.collect.config_files.OverBudget: stopped at /c: past 2 files
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..kernel import openat2, procfs
from ..model.text import shown

T = TypeVar("T")


class Refused(Exception):
    """A file that is not read; the message names it (shown()) and says why."""


class OverBudget(Exception):
    """The walk spent its budget; what was read before stays read."""


@dataclass(frozen=True)
class Limits:
    """What one configuration may cost, includes and all.

    A real nginx.conf with its includes is a few KiB to a few hundred KiB and
    costs a few ms; these bound what a root-owned but huge or looping
    configuration can cost the doctor (the exporter runs it every scrape under
    MemoryMax=512M)."""

    bytes: int = 4 << 20  # read from disk, all files together (a cached file costs once)
    cpu_s: float = 0.1  # this thread's CPU time
    wall_s: float = 1.0  # a slow filesystem; the machine's load does not count against cpu_s
    files: int = 256  # opens, an included file counting each time
    items: int = 65536  # directives kept: parsed into the cache and applied

    def describe(self) -> str:
        return (f"{self.bytes >> 20} MiB read, {self.cpu_s * 1000:.0f} ms CPU, "
                f"{self.wall_s:g} s, {self.files} files, {self.items:,} directives")


LIMITS = Limits()


class Budget:
    """What one walk has spent against its Limits; each take_* raises OverBudget past them."""

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits
        self.bytes = self.files = self.items = 0
        self._cpu0 = time.thread_time()
        self._wall0 = time.monotonic()
        self.where = ""  # the file being read, for the message

    def take_file(self, path: str) -> None:
        self.where = path
        self.files += 1
        if self.files > self.limits.files:
            self._over(f"{self.limits.files} files")
        self.tick()

    def take_bytes(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.limits.bytes:
            self._over(f"{self.limits.bytes >> 20} MiB read")

    def left_bytes(self) -> int:
        return max(0, self.limits.bytes - self.bytes)

    def take_items(self, n: int = 1) -> None:
        self.items += n
        if self.items > self.limits.items:
            self._over(f"{self.limits.items:,} directives")

    def tick(self) -> None:
        """Check the clocks; a parser calls it every few thousand tokens."""
        if time.thread_time() - self._cpu0 > self.limits.cpu_s:
            self._over(f"{self.limits.cpu_s * 1000:.0f} ms of CPU")
        if time.monotonic() - self._wall0 > self.limits.wall_s:
            self._over(f"{self.limits.wall_s:g} s")

    def _over(self, what: str) -> None:
        raise OverBudget(f"stopped at {shown(self.where)}: past {what}")


def untrusted(pid_dir: int) -> str | None:
    """Why the process whose /proc/PID directory fd is `pid_dir` may not name files
    for root to read, or None: it runs as root, from a binary owned by root that
    neither group nor others may write.

    The binary is stat()ed through the exe link, never opened or run. A /proc/PID
    fd keeps naming that process: if it exits and its pid is reused, reads fail."""
    with open("status", encoding="utf-8", errors="replace",
              opener=lambda p, f: os.open(p, f, dir_fd=pid_dir)) as fh:
        uids = procfs.parse_status(fh.read()).get("Uid", "").split()
    if not uids:
        return "has no Uid in /proc/PID/status"
    other = next((u for u in uids if u != "0"), None)
    if other is not None:
        return f"runs as uid {other}"
    try:
        st = os.stat("exe", dir_fd=pid_dir)  # follows the link to the running binary
    except OSError as exc:
        return f"runs from a binary that cannot be checked ({exc.strerror})"
    if st.st_uid != 0:
        return f"runs from a binary not owned by root (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"runs from a binary others may write (mode {stat.S_IMODE(st.st_mode):o})"
    return None


class ConfigFiles:
    """One configuration's files, inside the server's root, charged to `budget`.

    owners: the uids a file may belong to (root for a server's own files);
    explicit: a path the operator named (`--nginx-config`), read whatever its
    owner and mode; cache: shared by every walk of one run."""

    def __init__(self, root_fd: int, budget: Budget, cache: dict[Any, Any],
                 owners: frozenset[int] = frozenset({0}), explicit: str | None = None,
                 links: bool = False) -> None:
        self.root_fd = root_fd
        self.budget = budget
        self.cache = cache
        self.owners = owners
        self.explicit = explicit
        self.links = links  # follow a symlink one hop when root owns it (Debian's *-enabled/)

    def load(self, path: str, derive: Callable[[str, Budget], T], hops: int = 1) -> T:
        """derive(text, budget) of the file at `path`, from the cache when the same
        file (device, inode, size, mtime, ctime) was read before this run."""
        self.budget.take_file(path)
        try:
            fd = openat2.open_in_root(self.root_fd, path,
                                      os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                if self.links and hops > 0:
                    return self.load(self._link(path), derive, hops - 1)
                raise Refused(f"{shown(path)} is a symlink; not followed") from None
            raise Refused(f"cannot open {shown(path)}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            self._check(path, st)
            key = (derive, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if key in self.cache:
                return self.cache[key]
            text = self._read(fd, st.st_size).decode("utf-8", "replace")  # the bytes go now
        finally:
            os.close(fd)
        value = derive(text, self.budget)
        self.cache[key] = value
        return value

    def _link(self, path: str) -> str:
        """Where the symlink at `path` points (inside the root), if an allowed owner made
        it: a symlink is only as trusted as whoever could create it (Debian's
        sites-enabled/ and mods-enabled/ hold root's links to *-available/)."""
        head, name = os.path.split(path)
        try:
            parent = openat2.open_in_root(self.root_fd, head or "/", os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise Refused(f"cannot open {shown(head)}: {exc.strerror}") from None
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode) or st.st_uid not in self.owners:
                raise Refused(f"{shown(path)} is a symlink owned by uid {st.st_uid}; not followed")
            target = os.readlink(name, dir_fd=parent)
        except OSError as exc:
            raise Refused(f"cannot read the symlink {shown(path)}: {exc.strerror}") from None
        finally:
            os.close(parent)
        return os.path.normpath(os.path.join(head, target))

    def _check(self, path: str, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{shown(path)} is not a regular file")
        if path == self.explicit:
            return
        if st.st_uid not in self.owners:
            raise Refused(f"{shown(path)} is owned by uid {st.st_uid}, not root")
        if st.st_mode & 0o022:
            raise Refused(f"{shown(path)} is writable by group or others "
                          f"(mode {stat.S_IMODE(st.st_mode):o})")

    def _read(self, fd: int, size: int) -> bytearray:
        self.budget.take_bytes(size)  # a file larger than what is left is not read at all
        left = self.budget.left_bytes() + size
        data = bytearray()
        while len(data) <= left:
            chunk = os.read(fd, min(1 << 16, left + 1 - len(data)))
            if not chunk:
                break
            data += chunk
        self.budget.take_bytes(len(data) - size)  # it grew (or shrank) since fstat
        return data

    def listdir(self, directory: str) -> list[str]:
        """The names in `directory` inside the root; [] as glob(3) when it cannot be read."""
        try:
            fd = openat2.open_in_root(self.root_fd, directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return []
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)
            self.budget.tick()

    def glob(self, pattern: str) -> list[str]:
        """The paths `pattern` names inside the root, as glob(3) would: sorted, a
        wildcard in any component, hidden names only for a pattern starting with a
        dot; a pattern without wildcards is itself. At most `limits.files` paths."""
        if not any(c in pattern for c in "*?["):
            return [pattern]
        found = ["/"]
        for part in (p for p in pattern.split("/") if p):
            nxt = []
            for prefix in found:
                if not any(c in part for c in "*?["):
                    nxt.append(os.path.join(prefix, part))
                    continue
                for name in sorted(self.listdir(prefix)):
                    if fnmatch.fnmatchcase(name, part) and (part.startswith(".") or
                                                            not name.startswith(".")):
                        nxt.append(os.path.join(prefix, name))
            found = nxt[:self.budget.limits.files]
        return found

    def is_dir(self, path: str) -> bool:
        """Is `path` a directory inside the root (not through a last-component symlink)?"""
        try:
            fd = openat2.open_in_root(self.root_fd, path,
                                      os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return False
        os.close(fd)
        return True


def server_root(pid: int, pid_dir: int, proc: str, kind: str) -> int:
    """A server's root directory (an fd), or ours when it shares our mount namespace
    and its /proc/PID/root cannot be opened; Refused otherwise."""
    try:
        return os.open("root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pid_dir)
    except OSError:
        if procfs.ns_inode(pid, proc, "mnt") != procfs.ns_inode("self", proc, "mnt"):
            raise Refused(f"may not open /proc/{pid}/root and {kind} runs in another mount "
                          "namespace") from None
        return os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
