"""nginx's keepalive settings, read from its configuration files: a reader and a pure parser.

halfopen never executes a program it finds through /proc (a binary any user
names `nginx` would run as root). The reader finds each nginx master (a
process named nginx whose parent is not) and reads its files only if root
runs it from a root-owned binary (collect.config_files.untrusted: any user can
start a process named nginx whose `-c` names their own file, whose includes
name root's secrets). From a trusted master it takes its `-c FILE` from
/proc/PID/cmdline or else the Debian default /etc/nginx/nginx.conf, and reads
it and every `include` (globs expanded as glob(3) would, sorted) as files,
through collect.config_files.ConfigFiles:

  - resolved inside the master's root (/proc/PID/root with openat2
    RESOLVE_IN_ROOT), the last component opened O_NOFOLLOW|O_NONBLOCK;
  - only a regular file owned by root and not writable by group or others;
  - one Budget for the whole walk (4 MiB read, 100 ms CPU, 256 files, 65,536
    directives kept), each file read and parsed once a run however often it
    is included; includes nested at most MAX_DEPTH deep.

A master not trusted, a file refused or a walk stopped by its budget is a note
(what was read before the budget ran out is kept). `--nginx-config FILE` names
the configuration explicitly (read as the operator's: its owner is trusted
for its includes, its own mode is not checked; the same budget).

The parser keeps, of each file, an outline: the blocks that hold something,
and the directives the doctor uses (keepalive_timeout, listen, include):

    >>> c = parse("http { keepalive_timeout 65s; server { listen 80 so_keepalive=on; } }")
    >>> c.keepalive_timeouts, c.listens[0].port, c.listens[0].so_keepalive
    ([('http', 65.0)], 80, 'on')
    >>> outline("events { worker_connections 64; } http { include a/*.conf; gzip on; }")
    [('{', 'http'), ('include', 'a/*.conf'), ('}',)]
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..kernel import procfs
from ..model.nginx import NGINX_DEFAULT_CONF, NginxConf, NginxListen
from ..model.snapshot import Snapshot
from ..model.text import shown
from .config_files import (
    LIMITS,
    Budget,
    ConfigFiles,
    Limits,
    OverBudget,
    Refused,
    server_root,
    untrusted,
)

MAX_DEPTH = 16
MAX_WORDS = 16  # words kept of one directive: nginx's take at most a few
MAX_NOTED = 3  # untrusted masters named one by one; the rest are counted
_KEPT = ("keepalive_timeout", "listen", "include")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
          "y": 31536000}
_TIME = re.compile(r"^(\d+)(ms|s|m|h|d|w|M|y)?$")
# A quoted string runs to its closing quote or to the end of the text: with the
# closing quote required, each unterminated quote rescanned the rest of the file
# (`"\"\"\...`: 15 s for 64 KiB, quadratic: some 17 h at 4 MiB). Each token is matched once.
_TOKEN = re.compile(r"""'(?:[^'\\]|\\[\s\S]?)*'?|"(?:[^"\\]|\\[\s\S]?)*"?|[{};]|[^\s{};'"#]+|#[^\n]*""")

Event = tuple[str, ...]  # ("{", label), ("}",), or a kept directive: (name, *args)


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


def outline(text: str, budget: Budget | None = None) -> list[Event]:
    """The events of one file: the blocks that hold a kept directive (_KEPT) and
    those directives, in order. A block with nothing kept inside is dropped, so
    an outline stays small whatever the file; `budget` is charged an item for
    each event kept, and its clocks are checked every 4096 tokens."""
    events: list[Event] = []
    words: list[str] = []
    for n, m in enumerate(_TOKEN.finditer(text)):
        if budget is not None and not n & 4095:
            budget.tick()
        tok = m.group()
        if tok in ("{", "}", ";"):
            event: Event | None = None
            if tok == "{":
                event = ("{", " ".join(words[:2]) if words else "?")
            elif tok == "}" and events and events[-1][0] == "{":
                events.pop()  # an empty block: nothing in it is kept
                if budget is not None:
                    budget.take_items(-1)
            elif tok == "}":
                event = ("}",)
            elif words and words[0] in _KEPT:
                event = (sys.intern(words[0]), *words[1:])  # one name object, however many
            words = []
            if event is not None:
                if budget is not None:
                    budget.take_items(1)
                events.append(event)
        elif not tok.startswith("#") and len(words) < MAX_WORDS:
            words.append(tok.strip("'\""))
    return events


def _apply(conf: NginxConf, stack: list[str], event: Event) -> None:
    """One event of an outline, in the context `stack` (the labels of the open blocks)."""
    name, args = event[0], event[1:]
    if name == "{":
        stack.append(args[0])
        return
    if name == "}":
        if stack:
            stack.pop()
        return
    if not args or not stack or stack[0] != "http":
        return
    if name == "keepalive_timeout":
        try:
            conf.keepalive_timeouts.append((stack[-1], parse_time(args[0])))
        except ValueError:
            pass  # nginx -t would have refused it; nothing to compare
    elif name == "listen":
        so = None
        for a in args[1:]:
            if a.startswith("so_keepalive="):
                so = a.split("=", 1)[1]
        conf.listens.append(NginxListen(args[0], _port(args[0]), so))


def parse(text: str) -> NginxConf:
    """The keepalive_timeout values and listen directives of an nginx configuration
    (its includes not followed)."""
    conf, stack = NginxConf(), list[str]()
    for event in outline(text):
        _apply(conf, stack, event)
    return conf


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


class _Walk:
    """One configuration: its main file and every include, into one NginxConf."""

    def __init__(self, files: ConfigFiles, main: str) -> None:
        self.files = files
        self.main = main
        self.conf = NginxConf()
        self.stack: list[str] = []

    def run(self) -> None:
        """Walks from the main file; OverBudget leaves self.conf as far as it got."""
        self._file(self.main, 0)

    def _file(self, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise Refused(f"{shown(path)}: includes nested deeper than {MAX_DEPTH}")
        for n, event in enumerate(self.files.load(path, outline)):
            if not n & 4095:
                self.files.budget.tick()
            if event[0] == "include":
                for pattern in event[1:]:
                    for name in self._glob(self._full(pattern)):
                        self._file(name, depth + 1)
                continue
            if event[0] not in ("{", "}"):
                self.files.budget.take_items(1)  # a directive applied: one more entry kept
            _apply(self.conf, self.stack, event)

    def _full(self, pattern: str) -> str:
        # ngx_conf_full_name: relative include paths start at the main file's directory
        return pattern if pattern.startswith("/") else os.path.join(os.path.dirname(self.main),
                                                                     pattern)

    def _glob(self, pattern: str) -> list[str]:
        return self.files.glob(pattern)


def _masters(pids: list[int], proc: str) -> list[int]:
    """Each master: an nginx process whose parent is not one."""
    masters = []
    for pid in pids:
        try:
            ppid = int(procfs.status(pid, proc).get("PPid", "-1"))
        except (OSError, ValueError):
            continue
        if ppid not in pids:
            masters.append(pid)
    return masters


def _root_fd(pid: int, pid_dir: int, proc: str) -> int:
    return server_root(pid, pid_dir, proc, "nginx")


def _walk(root: int, main: str, cache: dict[Any, Any], limits: Limits,
          owners: frozenset[int] = frozenset({0}), explicit: str | None = None
          ) -> tuple[NginxConf, str]:
    """(what was read, "" or why the walk stopped early); Refused as the files raise it."""
    walk = _Walk(ConfigFiles(root, Budget(limits), cache, owners, explicit), main)
    try:
        walk.run()
    except OverBudget as exc:
        return walk.conf, str(exc)
    return walk.conf, ""


@dataclass
class _Read:
    """One master's configuration, or why it was not read."""

    conf: NginxConf | None = None
    path: str = ""  # its main file
    stranger: str = ""  # why the master is not trusted to name files
    stopped: str = ""  # where the budget stopped the walk


def _master(pid: int, proc: str, cache: dict[Any, Any], limits: Limits) -> _Read:
    """One master's files, when it is trusted; Refused or OSError when a file is refused."""
    pid_dir = os.open(f"{proc}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        why = untrusted(pid_dir)
        if why is not None:
            return _Read(stranger=why)
        with open("cmdline", "rb", opener=lambda p, f: os.open(p, f, dir_fd=pid_dir)) as fh:
            path = conf_path(fh.read(1 << 16))
        root = _root_fd(pid, pid_dir, proc)
    finally:
        os.close(pid_dir)
    try:
        conf, stopped = _walk(root, path, cache, limits)
    finally:
        os.close(root)
    return _Read(conf, path, stopped=stopped)


def read(snapshot: Snapshot, proc: str = "/proc", config: str | None = None,
         limits: Limits = LIMITS) -> tuple[NginxConf | None, str]:
    """(conf, note) from the running masters' files; (None, "") if no nginx runs.

    A master not run by root, or whose files are refused, is a note (the others
    are still read); a walk past its budget keeps what it read, with a note.
    config: `--nginx-config FILE`, read instead (a refused file is a UsageError).
    """
    pids = nginx_pids(snapshot, proc)
    cache: dict[Any, Any] = {}  # one run: a file is read and parsed once
    if config is not None:
        return _named(config, pids, cache, limits)
    if not pids:
        return None, ""
    masters = _masters(pids, proc)
    conf, read_any, notes, strangers = NginxConf(pids=pids), False, [], []
    for pid in masters:
        try:
            one = _master(pid, proc, cache, limits)
        except (Refused, OSError) as exc:
            notes.append(f"nginx pid {pid}: configuration not read ({_why(exc)})")
            continue
        if one.conf is None:
            strangers.append(f"nginx master pid {pid} {one.stranger}: its configuration "
                             "was not read")
            continue
        if one.stopped:
            notes.append(f"nginx pid {pid}: configuration read in part ({one.stopped}; "
                         "the rest was not read)")
        _merge(conf, one.conf)
        conf.config = conf.config or one.path
        read_any = True
    if len(strangers) > MAX_NOTED:
        strangers[MAX_NOTED:] = [f"and {len(strangers) - MAX_NOTED} more nginx masters not "
                                 "run by root, not read"]
    notes = strangers + notes
    if not masters:
        notes.append("nginx runs but no master process was found")
    if notes:
        notes[-1] += ("; name the file with --nginx-config FILE" if read_any else
                      "; keepalive_timeout not checked; name the file with --nginx-config FILE")
    return (conf if read_any else None), "; ".join(notes)


def _named(config: str, pids: list[int], cache: dict[Any, Any], limits: Limits
           ) -> tuple[NginxConf, str]:
    """`--nginx-config FILE`: the operator vouches for it; its owner is trusted for its
    includes (as root is). Over the budget: what was read, and a note."""
    try:
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            owners = frozenset({0, os.geteuid(), _owner(config)})
            conf, stopped = _walk(root, config, cache, limits, owners, config)
        finally:
            os.close(root)
    except (Refused, OSError) as exc:
        raise UsageError(f"--nginx-config {shown(config)}: {_why(exc)}") from None
    conf.pids, conf.config = pids, config
    note = f"--nginx-config {shown(config)} read in part ({stopped})" if stopped else ""
    return conf, note


def _why(exc: Refused | OSError) -> str:
    return str(exc.strerror or exc) if isinstance(exc, OSError) else str(exc)


def _owner(path: str) -> int:
    try:
        return os.stat(path).st_uid
    except OSError as exc:
        raise Refused(f"cannot read --nginx-config {shown(path)}: {exc.strerror}") from None


def _merge(conf: NginxConf, one: NginxConf) -> None:
    conf.keepalive_timeouts += one.keepalive_timeouts
    conf.listens += one.listens
