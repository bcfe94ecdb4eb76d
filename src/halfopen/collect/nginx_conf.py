"""nginx's keepalive settings, read from its configuration files: a reader and a pure parser.

halfopen never executes a program it finds through /proc (a binary any user
names `nginx` would run as root). The reader finds each nginx master (a
process named nginx whose parent is not), takes its `-c FILE` from
/proc/PID/cmdline or else the Debian default /etc/nginx/nginx.conf, and reads
it and every `include` (globs expanded as glob(3) would, sorted) as files:

  - resolved inside the master's root (/proc/PID/root with openat2
    RESOLVE_IN_ROOT), the last component opened O_NOFOLLOW|O_NONBLOCK;
  - only a regular file owned by root or by the master's uid and not
    writable by group or others (fstat on that fd), at most MAX_BYTES;
  - at most MAX_FILES files, includes nested at most MAX_DEPTH deep.

Anything else is a note naming the file, and `--nginx-config FILE` names the
configuration explicitly (read as the operator's: its owner is trusted too,
its mode is not checked). The parser turns the text into a NginxConf:

    >>> c = parse("http { keepalive_timeout 65s; server { listen 80 so_keepalive=on; } }")
    >>> c.keepalive_timeouts, c.listens[0].port, c.listens[0].so_keepalive
    ([('http', 65.0)], 80, 'on')
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat

from ..errors import UsageError
from ..kernel import openat2
from ..kernel import proc as procfs
from ..model.nginx import NGINX_DEFAULT_CONF, NginxConf, NginxListen
from ..model.snapshot import Snapshot

MAX_FILES = 256
MAX_DEPTH = 16
MAX_BYTES = 4 << 20
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
          "y": 31536000}
_TIME = re.compile(r"^(\d+)(ms|s|m|h|d|w|M|y)?$")
_TOKEN = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[{};]|[^\s{};'"#]+|#[^\n]*""")


def parse_time(word: str) -> float:
    """nginx time syntax in seconds: '75' -> 75.0, '1m30s' -> 90.0, '500ms' -> 0.5.

    >>> parse_time("1m30s"), parse_time("500ms"), parse_time("75")
    (90.0, 0.5, 75.0)
    """
    total = 0.0
    for part in re.findall(r"\d+(?:ms|s|m|h|d|w|M|y)?", word):
        m = _TIME.match(part)
        if m is None:  # findall above yields only what _TIME matches
            continue
        total += int(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|M|y)?)+", word):
        raise ValueError(f"not an nginx time: {word!r}")
    return total


def _port(address: str) -> int | None:
    """'80' -> 80, '[::]:443' -> 443, '10.0.0.1:8080' -> 8080, 'localhost' -> 80, 'unix:/x' -> None."""
    if address.startswith("unix:"):
        return None
    if address.isdigit():
        return int(address)
    tail = address.rsplit(":", 1)
    if len(tail) == 2 and tail[1].isdigit() and not address.endswith("]"):
        return int(tail[1])
    return 80


def parse(text: str) -> NginxConf:
    """The keepalive_timeout values and listen directives of an nginx configuration."""
    return parse_tokens([t for t in _TOKEN.findall(text) if not t.startswith("#")])


def parse_tokens(tokens: list[str]) -> NginxConf:
    """parse() on tokens, includes already spliced in where they stood."""
    conf = NginxConf()
    stack: list[str] = []
    words: list[str] = []
    server_names: list[str] = []
    for tok in tokens:
        if tok == "{":
            stack.append(" ".join(words[:2]) if words else "?")
            words = []
        elif tok == "}":
            if stack:
                stack.pop()
            words = []
        elif tok == ";":
            if words:
                _directive(conf, stack, words, server_names)
            words = []
        else:
            words.append(tok.strip("'\""))
    return conf


def _directive(conf: NginxConf, stack: list[str], words: list[str], names: list[str]) -> None:
    name, args = words[0], words[1:]
    context = stack[-1] if stack else "main"
    if name == "keepalive_timeout" and args and stack and stack[0] == "http":
        try:
            conf.keepalive_timeouts.append((context, parse_time(args[0])))
        except ValueError:
            pass  # nginx -t would have refused it; nothing to compare
    elif name == "listen" and args and stack and stack[0] == "http":
        so = None
        for a in args[1:]:
            if a.startswith("so_keepalive="):
                so = a.split("=", 1)[1]
        conf.listens.append(NginxListen(args[0], _port(args[0]), so))


class ConfError(Exception):
    """A configuration file halfopen will not read; the message names it and why."""


def nginx_pids(snapshot: Snapshot, proc: str = "/proc") -> list[int]:
    """Every process named nginx: the snapshot's, and /proc's (a master may hold no
    socket in the namespaces checked)."""
    found = {p.pid for p in snapshot.processes.values() if p.comm == "nginx"}
    for pid in procfs.pids(proc):
        if pid not in found:
            try:
                if procfs.read_comm(pid, proc) == "nginx":
                    found.add(pid)
            except OSError:
                continue
    return sorted(found)


def _status(pid: int, proc: str) -> tuple[int, int]:
    """(ppid, real uid) from /proc/PID/status."""
    fields = procfs.status(pid, proc)
    ppid = int(fields["PPid"]) if "PPid" in fields else -1
    uid = int(fields["Uid"].split()[0]) if "Uid" in fields else -1
    return ppid, uid


def conf_path(cmdline: bytes) -> str:
    """The configuration a master was started with: its -c, else the default.

    >>> conf_path(b"nginx: master process /usr/sbin/nginx -c /srv/n.conf -g daemon off;\\0")
    '/srv/n.conf'
    >>> conf_path(b"/usr/sbin/nginx\\0-c\\0/srv/n.conf\\0"), conf_path(b"/usr/sbin/nginx\\0-c/x\\0")
    ('/srv/n.conf', '/x')
    >>> conf_path(b"nginx: master process /usr/sbin/nginx\\0")
    '/etc/nginx/nginx.conf'
    """
    # nginx rewrites its argv into one title ("nginx: master process ARGS"), so
    # split on spaces too: ngx_get_options takes "-c FILE" and "-cFILE".
    words = cmdline.replace(b"\0", b" ").decode("utf-8", "replace").split()
    for i, word in enumerate(words):
        if word == "-c" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("-c") and len(word) > 2:
            return word[2:]
    return NGINX_DEFAULT_CONF


class _Reader:
    """Reads one master's files inside its root, with the owner checks above."""

    def __init__(self, root_fd: int, owners: set[int], explicit: str | None = None) -> None:
        self.root_fd = root_fd
        self.owners = owners
        self.explicit = explicit
        self.files: list[str] = []

    def tokens(self, path: str, depth: int = 0) -> list[str]:
        if depth > MAX_DEPTH:
            raise ConfError(f"{path}: includes nested deeper than {MAX_DEPTH}")
        if len(self.files) >= MAX_FILES:
            raise ConfError(f"more than {MAX_FILES} configuration files")
        self.files.append(path)
        text = self._read(path)
        out: list[str] = []
        toks = [t for t in _TOKEN.findall(text) if not t.startswith("#")]
        i = 0
        while i < len(toks):
            if toks[i] == "include" and (i == 0 or toks[i - 1] in ("{", "}", ";")):
                end = toks.index(";", i) if ";" in toks[i:] else len(toks)
                for pattern in toks[i + 1:end]:
                    for name in self._glob(self._full(pattern.strip("'\""))):
                        out += self.tokens(name, depth + 1)
                i = end + 1
                continue
            out.append(toks[i])
            i += 1
        return out

    def _full(self, pattern: str) -> str:
        # ngx_conf_full_name: relative include paths start at the main file's directory
        base = os.path.dirname(self.files[0])
        return pattern if pattern.startswith("/") else os.path.join(base, pattern)

    def _glob(self, pattern: str) -> list[str]:
        if not any(c in pattern for c in "*?["):
            return [pattern]
        parts = [p for p in pattern.split("/") if p]
        found = ["/"]
        for part in parts:
            nxt = []
            for prefix in found:
                if not any(c in part for c in "*?["):
                    nxt.append(os.path.join(prefix, part))
                    continue
                for name in sorted(self._listdir(prefix)):
                    if fnmatch.fnmatchcase(name, part) and (part.startswith(".") or
                                                            not name.startswith(".")):
                        nxt.append(os.path.join(prefix, name))
            found = nxt[:MAX_FILES]
        return found

    def _listdir(self, directory: str) -> list[str]:
        try:
            fd = openat2.open_in_root(self.root_fd, directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return []  # glob(3): an unreadable or missing directory matches nothing
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def _read(self, path: str) -> str:
        try:
            fd = openat2.open_in_root(self.root_fd, path,
                                      os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfError(f"{path} is a symlink; not followed") from None
            raise ConfError(f"cannot open {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfError(f"{path} is not a regular file")
            if path != self.explicit:
                if st.st_uid not in self.owners:
                    raise ConfError(f"{path} is owned by uid {st.st_uid}, neither root nor "
                                    "nginx's master")
                if st.st_mode & 0o022:
                    raise ConfError(f"{path} is writable by group or others "
                                    f"(mode {stat.S_IMODE(st.st_mode):o})")
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ConfError(f"{path} is larger than {MAX_BYTES} bytes")
        return data.decode("utf-8", "replace")


def _masters(pids: list[int], proc: str) -> list[tuple[int, int]]:
    """(pid, uid) of each master: an nginx process whose parent is not one."""
    masters = []
    for pid in pids:
        try:
            ppid, uid = _status(pid, proc)
        except OSError:
            continue
        if ppid not in pids:
            masters.append((pid, uid))
    return masters


def _root_fd(pid: int, proc: str) -> int:
    """The master's root directory, or ours when the master shares our mount namespace."""
    try:
        return os.open(f"{proc}/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        if procfs.ns_inode(pid, proc, "mnt") != procfs.ns_inode("self", proc, "mnt"):
            raise ConfError(f"may not open /proc/{pid}/root and nginx runs in another mount "
                            "namespace") from None
        return os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def read(snapshot: Snapshot, proc: str = "/proc", config: str | None = None
         ) -> tuple[NginxConf | None, str]:
    """(conf, note) from the running masters' files; (None, "") if no nginx runs.

    A master whose files are refused is a note (the others are still read);
    config: `--nginx-config FILE`, read instead (a refusal is a UsageError).
    """
    pids = nginx_pids(snapshot, proc)
    if config is not None:
        conf = NginxConf(pids=pids, config=config)
        try:
            root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                _merge(conf, _Reader(root, {0, os.geteuid(), _owner(config)}, config)
                       .tokens(config))
            finally:
                os.close(root)
        except (ConfError, OSError) as exc:
            raise UsageError(f"--nginx-config {config}: {_why(exc)}") from None
        return conf, ""
    if not pids:
        return None, ""
    masters = _masters(pids, proc)
    conf, read_any, notes = NginxConf(pids=pids), False, []
    for pid, uid in masters:
        try:
            with open(f"{proc}/{pid}/cmdline", "rb") as f:
                path = conf_path(f.read())
            root = _root_fd(pid, proc)
            try:
                _merge(conf, _Reader(root, {0, uid}).tokens(path))
            finally:
                os.close(root)
            conf.config = conf.config or path
            read_any = True
        except (ConfError, OSError) as exc:
            notes.append(f"nginx pid {pid}: configuration not read ({_why(exc)})")
    if not masters:
        notes.append("nginx runs but no master process was found")
    if notes:
        notes[-1] += ("; name the file with --nginx-config FILE" if read_any else
                      ": keepalive_timeout not checked; name the file with --nginx-config FILE")
    return (conf if read_any else None), "; ".join(notes)


def _why(exc: ConfError | OSError) -> str:
    return str(exc.strerror or exc) if isinstance(exc, OSError) else str(exc)


def _owner(path: str) -> int:
    try:
        return os.stat(path).st_uid
    except OSError as exc:
        raise ConfError(f"cannot read --nginx-config {path}: {exc.strerror}") from None


def _merge(conf: NginxConf, tokens: list[str]) -> None:
    one = parse_tokens(tokens)
    conf.keepalive_timeouts += one.keepalive_timeouts
    conf.listens += one.listens
