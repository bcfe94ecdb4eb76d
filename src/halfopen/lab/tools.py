"""What the lab calls to look and to fix: the doctor, kill, keepalive, ss, nstat.

halfopen's own commands are run as a person would run them (`halfopen doctor
--json --netns NAME`, `halfopen kill FILTER --yes`, ...), in a subprocess, and
their JSON is read back. When a command is not installed in this checkout the
lab falls back to the kernel's own tools (ss -K) or to the same syscalls
(pidfd_getfd + setsockopt) and says so.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import os
import shlex
import socket
import subprocess
import sys
from typing import Any

from .topo import Lab

_HALFOPEN = [sys.executable, "-m", "halfopen.cli.main"]
# The lab's timers run in seconds, so the doctor's age thresholds (CLOSE_WAIT age, idle
# time, no-ACK time: 30 s to 10 min on a real host) are shrunk to match.
DOCTOR_MIN_AGE = 1
DOCTOR_WINDOW = 1.5  # counters sampled this far apart (the default is 3 s)

# include/uapi/asm-generic/unistd.h
SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438


def command_options(name: str) -> set[str] | None:
    """The option strings of halfopen subcommand `name`, None if not installed."""
    module = f"halfopen.cli.{name}_cmd"
    try:
        if importlib.util.find_spec(module) is None:
            return None
        cmd = getattr(importlib.import_module(module), name)
    except Exception:  # a half-landed module from a concurrent commit: treat as absent
        return None
    return {opt for p in cmd.params for opt in getattr(p, "opts", ())}


def _halfopen(lab: Lab, role: str, words: list[str], timeout: float = 90.0,
              via_exec: bool = False) -> subprocess.CompletedProcess:
    """Run `halfopen WORDS` for namespace `role`: --netns when the command has it, else
    (or with via_exec) inside it with `ip netns exec`, where it is the doctor's "host"."""
    opts = command_options(words[0]) or set()
    if "--netns" in opts and not via_exec:
        argv = [*words, "--netns", lab.ns(role)]
        shown = ["halfopen", *argv]
        run = [*_HALFOPEN, *argv]
    else:
        shown = ["ip", "netns", "exec", lab.ns(role), "halfopen", *words]
        run = ["ip", "netns", "exec", lab.ns(role), *_HALFOPEN, *words]
    lab.say.cmd(shlex.join(shown))
    return subprocess.run(run, capture_output=True, text=True, timeout=timeout)


def doctor(lab: Lab, role: str, extra: list[str] | None = None,
           as_host: bool = False) -> dict[str, Any] | None:
    """`halfopen doctor --json` in a lab namespace; None when the doctor is not installed.

    as_host runs it under `ip netns exec`, so the namespace is the doctor's own host
    (declared --middlebox timeouts apply to the doctor's own namespace only).
    """
    if command_options("doctor") is None:
        lab.say.note("(halfopen doctor is not installed in this checkout: direct checks only)")
        return None
    words = ["doctor", "--json", "--window", str(DOCTOR_WINDOW), *(extra or [])]
    if "--min-age" in (command_options("doctor") or set()):
        words += ["--min-age", str(DOCTOR_MIN_AGE)]
        lab.shrunk["doctor: --min-age (age thresholds, s)"] = str(DOCTOR_MIN_AGE)
    proc = _halfopen(lab, role, words, via_exec=as_host)
    if proc.returncode not in (0, 1, 2):
        lab.say.note(f"doctor exit {proc.returncode}: {proc.stderr.strip()[:300]}")
        return {"error": proc.stderr.strip(), "exit": proc.returncode, "findings": []}
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        lab.say.note(f"doctor printed no JSON: {proc.stdout[:200]!r}")
        return {"error": "no JSON", "exit": proc.returncode, "findings": []}
    report["exit"] = proc.returncode
    for f in report.get("findings", []):
        lab.say.note(f"finding {f.get('id')} [{f.get('severity')}]: {f.get('title')}")
    if not report.get("findings"):
        lab.say.note(f"doctor: status {report.get('status')}, no findings")
    return report


def kill(lab: Lab, role: str, words: list[str], fallback_ss: list[str]) -> str:
    """Destroy sockets with `halfopen kill WORDS --yes`, or `ss -K` when it is absent."""
    if command_options("kill") is not None:
        proc = _halfopen(lab, role, ["kill", *words, "--yes"])
        if proc.returncode in (0, 1, 2):
            if proc.stdout.strip():
                lab.say.note(proc.stdout.strip().splitlines()[-1])
            return "halfopen kill"
        lab.say.note(f"halfopen kill exit {proc.returncode}: {proc.stderr.strip()[:200]}; using ss -K")
    else:
        lab.say.note("(halfopen kill is not installed in this checkout: using ss -K, the same SOCK_DESTROY)")
    lab.sh(["ss", "-K", "-tn", *fallback_ss], ns=role)
    return "ss -K"


def keepalive(lab: Lab, role: str, pid: int, idle: int, interval: int, count: int,
              words: list[str] | None = None) -> str:
    """Retrofit keepalive onto a running process: `halfopen keepalive`, else pidfd_getfd here."""
    args = ["--pid", str(pid), "--idle", str(idle), "--interval", str(interval), "--count", str(count)]
    if command_options("keepalive") is not None:
        proc = _halfopen(lab, role, ["keepalive", *args, *(words or []), "--yes"])
        if proc.returncode in (0, 1, 2):
            if proc.stdout.strip():
                lab.say.note(proc.stdout.strip().splitlines()[-1])
            return "halfopen keepalive"
        lab.say.note(f"halfopen keepalive exit {proc.returncode}: {proc.stderr.strip()[:200]}; "
                     "using pidfd_getfd directly")
    else:
        lab.say.note("(halfopen keepalive is not installed in this checkout: the lab does the same "
                     "with pidfd_open + pidfd_getfd + setsockopt)")
    n = retrofit_keepalive(pid, idle, interval, count)
    lab.say.note(f"keepalive set on {n} TCP socket(s) of pid {pid}: "
                 f"TCP_KEEPIDLE={idle} TCP_KEEPINTVL={interval} TCP_KEEPCNT={count}")
    return "pidfd_getfd"


def retrofit_keepalive(pid: int, idle: int, interval: int, count: int) -> int:
    """SO_KEEPALIVE on every connected TCP socket of `pid`, through a pidfd_getfd copy."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pidfd_open({pid}): {os.strerror(err)}")
    done = 0
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                continue
            s = socket.socket(fileno=fd)
            try:
                if s.type != socket.SOCK_STREAM or s.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                try:
                    s.getpeername()
                except OSError:
                    continue  # a listener, or already gone
                s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
                done += 1
            finally:
                s.close()  # our copy only; the process keeps its fd
    finally:
        os.close(pidfd)
    return done


# -- direct checks ---------------------------------------------------------------

def ss_count(lab: Lab, role: str, words: list[str], show: bool = True) -> int:
    """Number of TCP sockets `ss -Htan WORDS` lists in a lab namespace."""
    out = lab.sh(["ss", "-Htan", *words], ns=role, show=show).stdout
    return len([line for line in out.splitlines() if line.strip()])


def nstat(lab: Lab, role: str, names: list[str], show: bool = True) -> dict[str, int]:
    """Absolute TCP counters in a lab namespace (`nstat -asz NAME...`), missing ones as 0.

    "TcpExtListenOverflows           12                 0.0" -> {"TcpExtListenOverflows": 12}
    """
    out = lab.sh(["nstat", "-asz", *names], ns=role, show=show).stdout
    got = {n: 0 for n in names}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in got:
            got[parts[0]] = int(parts[1])
    return got


def socket_fds(pid: int) -> int:
    n = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n
