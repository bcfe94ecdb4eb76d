"""Shared by the tests/sockets suite: namespaces, socket puppets, and an ss parser.

Everything here starts real things (namespaces, processes) and every starter
has a matching stopper that the fixtures call in `finally`.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PUPPET = HERE / "puppet.py"
DATA = HERE / "data"

# Test addresses: RFC 2544 benchmarking space (198.18.0.0/15) and its IPv6
# sibling 2001:2::/48 (RFC 5180). LOCAL sits on a veth end with ARP off;
# UNANSWERED is on-link there, so packets to it leave on the veth and are
# dropped by the peer end (no neighbour resolution, so no ICMP error either).
LOCAL4, UNANSWERED4 = "198.18.0.1", "198.18.0.2"
LOCAL6, UNANSWERED6 = "2001:2::1", "2001:2::2"


def run(*argv: str, check: bool = True, netns: str | None = None, timeout: float = 20,
        **kw) -> subprocess.CompletedProcess:
    if netns is not None:
        argv = ("ip", "netns", "exec", netns, *argv)
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


def make_netns(prefix: str = "hos") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "link", "set", "lo", "up", netns=name)
        # v0 holds our addresses; with ARP/ND off it sends frames for on-link
        # peers to its own MAC, so v1 (no address) drops them as not its own.
        run("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1", netns=name)
        run("ip", "link", "set", "v0", "arp", "off", "up", netns=name)
        run("ip", "link", "set", "v1", "up", netns=name)
        run("ip", "addr", "add", f"{LOCAL4}/24", "dev", "v0", netns=name)
        run("ip", "-6", "addr", "add", f"{LOCAL6}/64", "dev", "v0", "nodad", netns=name)
    except BaseException:
        remove_netns(name)
        raise
    return name


def remove_netns(name: str) -> None:
    for pid in run("ip", "netns", "pids", name, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run("ip", "netns", "del", name, check=False)


class Puppet:
    """A helper process (tests/sockets/puppet.py) that holds sockets on command."""

    def __init__(self, name: str, netns: str | None = None, user: str | None = None) -> None:
        argv = [sys.executable, str(PUPPET), name]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self._buf = b""
        try:
            word, pid = self._line(10).split()
            assert word == "ready", word
            self.pid = int(pid)
        except BaseException:
            self.stop()
            raise

    def _line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"puppet {self.name}: no answer in {timeout}s")
            chunk = os.read(fd, 4096)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")
                raise AssertionError(f"puppet {self.name} exited: {err.strip()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def do(self, *words: object, timeout: float = 10) -> list[str]:
        self.proc.stdin.write((" ".join(map(str, words)) + "\n").encode())
        answer = self._line(timeout).split()
        if not answer or answer[0] != "ok":
            raise AssertionError(f"puppet {self.name}: {' '.join(map(str, words))}: "
                                 f"{' '.join(answer)}")
        return answer[1:]

    def ints(self, *words: object) -> list[int]:
        return [int(x) for x in self.do(*words)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        finally:
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                f.close()


def wait_for(what: str, check: Callable[[], object], timeout: float = 5.0,
             step: float = 0.02):
    """Poll `check` until it returns something true; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------- ss output

@dataclass
class SsRow:
    state: str
    recv_q: int
    send_q: int
    local_addr: str
    local_port: int | None
    peer_addr: str
    peer_port: int | None
    owners: set[tuple[str, int, int]] = field(default_factory=set)
    timer: str | None = None
    timer_ms: int | None = None
    timer_precision_ms: int = 0
    timer_retrans: int | None = None
    uid: int = 0
    inode: int | None = None
    cookie: int | None = None
    info: dict[str, str] = field(default_factory=dict)


_USER = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=(\d+)\)')
_TIMER = re.compile(r"timer:\((\w+),([^,]*),(\d+)\)")
_MS = re.compile(r"^(?:(\d+)min)?(?:(\d+)(sec|\.))?(?:(\d+)ms)?$")


def parse_endpoint(text: str) -> tuple[str, int | None]:
    """'198.18.0.1:80' / '[2001:2::1]:80' / '*:80' / '0.0.0.0:*' / '1.2.3.4%lo:5'."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.split("%", 1)[0]
    return host, None if port == "*" else int(port)


def parse_ss_ms(text: str) -> tuple[int, int]:
    """ss's print_ms_timer() text -> (ms, precision ms).

    >>> parse_ss_ms("1min59sec"), parse_ss_ms("1.234ms"), parse_ss_ms("200ms")
    ((119000, 1000), (1234, 1), (200, 1))
    """
    m = _MS.match(text)
    if not m or not text:
        if text == "":
            return 0, 1
        raise ValueError(f"bad ss timer {text!r}")
    minutes, secs, sep, ms = m.groups()
    total = int(minutes or 0) * 60000 + int(secs or 0) * 1000 + int(ms or 0)
    if minutes and int(minutes) > 9:
        precision = 60000
    elif minutes or (secs and int(secs) > 9):
        precision = 1000
    else:
        precision = 1
    return total, precision


def parse_ss(text: str) -> list[SsRow]:
    """Parse `ss -tanpeio` output: one row per socket, continuation lines joined.

    A row's state is "" when ss left the State column out.
    """
    rows: list[SsRow] = []
    entries: list[str] = []
    lines = text.splitlines()
    if not lines:
        return rows
    # ss drops the State column when the filter selects a single state
    has_state = lines[0].split()[0] == "State"
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0].isspace() and entries:
            entries[-1] += " " + line.strip()
        else:
            entries.append(line)
    for entry in entries:
        words = entry.split()
        if not has_state:
            words.insert(0, "")
        state, rq, sq, local, peer = words[:5]
        rest = " ".join(words[5:])
        la, lp = parse_endpoint(local)
        pa, pp = parse_endpoint(peer)
        row = SsRow(state, int(rq), int(sq), la, lp, pa, pp)
        for comm, pid, fd in _USER.findall(rest):
            row.owners.add((comm, int(pid), int(fd)))
        m = _TIMER.search(rest)
        if m:
            row.timer = m.group(1)
            row.timer_ms, row.timer_precision_ms = parse_ss_ms(m.group(2))
            row.timer_retrans = int(m.group(3))
        for key, value in re.findall(r"(?:^|\s)([a-z_]+):(\S+)", rest):
            row.info.setdefault(key, value)
        row.uid = int(row.info.get("uid", 0))
        row.inode = int(row.info["ino"]) if "ino" in row.info else None
        row.cookie = int(row.info["sk"], 16) if "sk" in row.info else None
        rows.append(row)
    return rows


def ss(netns: str | None = None, *extra: str) -> list[SsRow]:
    return parse_ss(run("ss", "-tanpeio", *extra, netns=netns).stdout)


def halfopen(*args: str, check: bool = True, user: str | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess:
    """Run the installed CLI the way a user does."""
    argv = [sys.executable, "-m", "halfopen.cli.main", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"halfopen {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
    return proc


def halfopen_json(*args: str) -> dict:
    return json.loads(halfopen(*args, "--json").stdout)
