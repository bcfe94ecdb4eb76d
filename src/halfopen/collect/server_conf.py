"""Other servers' idle timeouts, read from their configuration files: haproxy, redis, httpd.

Like nginx's (collect.nginx_conf), and with the same rules (collect.config_files):
never a binary run, only a master that root runs from a root-owned binary names
files (`untrusted`), only regular root-owned files nobody else may write, read
inside the master's root, one Budget a master, one cache a run. Each server's
grammar is its own module (haproxy_conf, redis_conf, apache_conf); this one finds
the masters and gathers what they say into model.servers.ServerTimeouts, keyed
by the master's and its workers' pids (the rules match them with the listening
sockets' owners and ports).

A master is a process with one of the names below whose parent does not have
that name; its workers are its descendants with the name. A master not trusted,
a file refused or a walk past its budget is one note (what was read stays).
"""

from __future__ import annotations

import os
from typing import Any

from ..kernel import procfs
from ..model.servers import ServerFacts, ServerTimeouts
from . import apache_conf, haproxy_conf, redis_conf
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

# the process name (comm) -> its server
COMMS = {"haproxy": "haproxy", "redis-server": "redis", "apache2": "apache2", "httpd": "apache2"}
MAX_NOTED = 3  # untrusted masters of one server named one by one; the rest are counted


def _processes(proc: str) -> dict[int, tuple[str, int]]:
    """pid -> (comm, ppid) of every process with a name in COMMS (a master may hold no
    socket in the namespaces checked: /proc, not the snapshot)."""
    found: dict[int, tuple[str, int]] = {}
    for pid in procfs.pids(proc):
        try:
            comm = procfs.read_comm(pid, proc)
            if comm not in COMMS:
                continue
            ppid = int(procfs.status(pid, proc).get("PPid", "-1"))
        except (OSError, ValueError):
            continue
        found[pid] = (comm, ppid)
    return found


def masters(procs: dict[int, tuple[str, int]]) -> dict[int, list[int]]:
    """master pid -> its pids (itself first, then its workers: descendants of that name).

    >>> masters({10: ("haproxy", 1), 11: ("haproxy", 10), 12: ("haproxy", 11), 20: ("redis-server", 1)})
    {10: [10, 11, 12], 20: [20]}
    """
    out: dict[int, list[int]] = {}
    for pid, (comm, ppid) in sorted(procs.items()):
        if procs.get(ppid, ("", 0))[0] != comm:
            out[pid] = [pid]
    for master, family in out.items():
        comm = procs[master][0]
        grew = True
        while grew:
            grew = False
            for pid, (c, ppid) in sorted(procs.items()):
                if c == comm and ppid in family and pid not in family:
                    family.append(pid)
                    grew = True
    return out


def _argv(pid_dir: int) -> tuple[list[str], str]:
    """(the command line's words, the working directory) of a trusted master."""
    with open("cmdline", "rb", opener=lambda p, f: os.open(p, f, dir_fd=pid_dir)) as fh:
        raw = fh.read(1 << 16)
    argv = [w.decode("utf-8", "replace") for w in raw.rstrip(b"\0").split(b"\0")]
    try:
        cwd = os.readlink("cwd", dir_fd=pid_dir)
    except OSError:
        cwd = "/"
    return argv, cwd


def _reader(comm: str, files: ConfigFiles, argv: list[str], cwd: str) -> Any:
    server = COMMS[comm]
    if server == "haproxy":
        return haproxy_conf.Reader(files, argv, cwd)
    if server == "redis":
        return redis_conf.Reader(files, argv, cwd)
    return apache_conf.Reader(files, argv, cwd, comm)


def _master(pid: int, comm: str, pids: list[int], proc: str, cache: dict[Any, Any],
            limits: Limits) -> tuple[list[ServerTimeouts], str, str]:
    """(timeouts, why the master is not trusted, where the budget stopped); Refused or
    OSError when a file is refused."""
    pid_dir = os.open(f"{proc}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        why = untrusted(pid_dir)
        if why is not None:
            return [], why, ""
        argv, cwd = _argv(pid_dir)
        root = server_root(pid, pid_dir, proc, COMMS[comm])
    finally:
        os.close(pid_dir)
    try:
        # httpd's Debian layout is links (mods-enabled/, sites-enabled/): root's are followed
        files = ConfigFiles(root, Budget(limits), cache, links=COMMS[comm] == "apache2")
        reader = _reader(comm, files, argv, cwd)
        stopped = ""
        try:
            reader.run()
        except OverBudget as exc:
            stopped = str(exc)
    finally:
        os.close(root)
    out = reader.result()
    for t in out:
        t.pids = list(pids)
    return out, "", stopped


def read(proc: str = "/proc", limits: Limits = LIMITS) -> ServerFacts:
    """Every running haproxy's, redis's and httpd's timeouts, with a note for each master
    not read (not run by root, a file refused) or read in part (its budget)."""
    procs = _processes(proc)
    cache: dict[Any, Any] = {}  # one run: a file is read and parsed once
    facts = ServerFacts()
    strangers: dict[str, list[str]] = {}
    for pid, family in masters(procs).items():
        comm = procs[pid][0]
        server = COMMS[comm]
        try:
            timeouts, why, stopped = _master(pid, comm, family, proc, cache, limits)
        except (Refused, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            facts.notes.append(f"{server} pid {pid}: configuration not read ({reason}); its "
                               "idle timeout is not known")
            continue
        if why:
            strangers.setdefault(server, []).append(
                f"{server} master pid {pid} {why}: its configuration was not read")
            continue
        if stopped:
            facts.notes.append(f"{server} pid {pid}: configuration read in part ({stopped}; "
                               "the rest was not read)")
        facts.timeouts += timeouts
    for server, lines in strangers.items():
        if len(lines) > MAX_NOTED:
            lines[MAX_NOTED:] = [f"and {len(lines) - MAX_NOTED} more {server} masters not run "
                                 "by root, not read"]
        facts.notes[:0] = lines
    return facts
