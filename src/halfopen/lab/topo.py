"""Topology helpers: namespaces, veth links, sysctls, nft, processes.

Every change is made by running the command a person would type (ip, nft,
sysctl), and the command is printed first, so a lab run reads as a lesson.
Veth pairs are created directly inside the lab's namespaces (`ip -n A link
add ... peer ... netns B`), so nothing ever appears in the host namespace.
Addresses are 198.18.N.1/24 and 198.18.N.2/24 (RFC 2544 benchmarking space);
there is no default route, only 198.18.0.0/15 routes between namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..collect import netns as netns_mod
from .state import JOURNAL, NETNS_PREFIX, RunRecord, pending_host_entries, run_dir, start_time


class LabError(Exception):
    """A lab step failed: the command, its exit code and its stderr."""


class Narrator:
    """Prints the lesson: steps, commands, notes, checks."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.log: list[dict[str, Any]] = []

    def _w(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, text: str) -> None:
        self.log.append({"step": text})
        self._w(f"\n== {text}")

    def cmd(self, text: str) -> None:
        self.log.append({"cmd": text})
        self._w(f"$ {text}")

    def note(self, text: str) -> None:
        self.log.append({"note": text})
        self._w(f"   {text}")

    def check(self, text: str, ok: bool) -> None:
        self._w(f"   [{'ok' if ok else 'FAIL'}] {text}")


@dataclass
class App:
    """A lab server process and its JSON-line conversation."""

    proc: subprocess.Popen
    netns: str
    events: list[dict[str, Any]] = field(default_factory=list)
    _buf: bytes = b""
    _seen: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def _lines(self, timeout: float) -> list[dict[str, Any]]:
        """Events printed within `timeout` s (the first batch that arrives), [] if none."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return []
            chunk = os.read(fd, 65536)
            if not chunk:
                return []
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        events = [json.loads(line) for line in lines if line.strip()]
        self.events.extend(events)
        return events

    def wait_event(self, name: str, timeout: float) -> dict[str, Any] | None:
        """The first event called `name` not yet returned, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("event") == name and i not in self._seen:
                    self._seen.add(i)
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self._lines(left) and self.proc.poll() is not None:
                return None  # it exited: nothing more will come

    def drain(self) -> list[dict[str, Any]]:
        """Every event already printed, without waiting."""
        return self._lines(0.0)

    def ask(self, line: str, reply: str, timeout: float = 3.0) -> dict[str, Any] | None:
        self.send(line)
        return self.wait_event(reply, timeout)


class Lab:
    """One run's namespaces, links, processes and sysctl changes."""

    def __init__(self, run_id: str, record: RunRecord, say: Narrator) -> None:
        self.run_id = run_id
        self.record = record
        self.say = say
        self.namespaces: dict[str, str] = {}  # role -> name
        self.apps: list[App] = []
        self.shrunk: dict[str, str] = {}  # "role: key" -> value, shrunk timers
        self.host_changes: dict[str, str] = {}  # key -> original value, until restored
        self.host_touched: dict[str, str] = {}  # key -> original value, for the verdict
        self.links = 0

    # -- commands -------------------------------------------------------------

    def sh(self, argv: list[str], ns: str | None = None, check: bool = True,
           show: bool = True, timeout: float = 20.0, echo: bool = False) -> subprocess.CompletedProcess:
        if ns is not None:
            argv = ["ip", "netns", "exec", self.namespaces[ns], *argv]
        if show:
            self.say.cmd(shlex.join(argv))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if echo:
            lines = proc.stdout.rstrip("\n").splitlines()
            for line in lines[:12]:
                self.say.out.write(f"  {line}\n")
            if len(lines) > 12:
                self.say.out.write(f"  ... ({len(lines)} lines)\n")
        if check and proc.returncode != 0:
            raise LabError(f"{shlex.join(argv)} -> exit {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def ns(self, role: str) -> str:
        return self.namespaces[role]

    @property
    def journal(self) -> str:
        """This run's `halfopen fix --journal` file (its directory is made on first use)."""
        directory = run_dir(self.record.state.directory, self.run_id)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        return os.path.join(directory, JOURNAL)

    # -- topology -------------------------------------------------------------

    def add_netns(self, role: str) -> str:
        name = f"{NETNS_PREFIX}{self.run_id}-{role}"
        self.record.add_netns(name)  # before it exists: a crash in between is still cleaned
        self.namespaces[role] = name
        self.sh(["ip", "netns", "add", name])
        space = netns_mod.named(name)
        self.record.mark_netns(name, space.inode, netns_mod.cookie(space))
        self.sh(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def link(self, a: str, b: str) -> tuple[str, str]:
        """veth between roles a and b: a gets 198.18.N.1, b 198.18.N.2. Returns the addresses."""
        self.links += 1
        n = self.links
        ia, ib = f"to-{b}"[:15], f"to-{a}"[:15]
        na, nb = self.ns(a), self.ns(b)
        self.sh(["ip", "-n", na, "link", "add", ia, "type", "veth", "peer", "name", ib, "netns", nb])
        addr_a, addr_b = f"198.18.{n}.1", f"198.18.{n}.2"
        self.sh(["ip", "-n", na, "addr", "add", f"{addr_a}/24", "dev", ia])
        self.sh(["ip", "-n", nb, "addr", "add", f"{addr_b}/24", "dev", ib])
        self.sh(["ip", "-n", na, "link", "set", ia, "up"])
        self.sh(["ip", "-n", nb, "link", "set", ib, "up"])
        return addr_a, addr_b

    def routed(self) -> tuple[str, str]:
        """cli - rtr - srv: two links, routes through the router, forwarding on.

        Returns (client address, server address)."""
        for role in ("cli", "rtr", "srv"):
            self.add_netns(role)
        rtr_c, cli_ip = self.link("rtr", "cli")
        rtr_s, srv_ip = self.link("rtr", "srv")
        self.route("cli", rtr_c)
        self.route("srv", rtr_s)
        self.sysctl("rtr", "net.ipv4.ip_forward", 1)
        return cli_ip, srv_ip

    def route(self, role: str, via: str, prefix: str = "198.18.0.0/15") -> None:
        self.sh(["ip", "-n", self.ns(role), "route", "add", prefix, "via", via])

    def sysctl(self, role: str, key: str, value: str | int, shrink: bool = False) -> None:
        """Set a sysctl inside a lab namespace (gone with the namespace).

        Printed as `ip netns exec NS sysctl -w KEY=VALUE`; done by writing /proc/sys from
        a thread inside the namespace, because procps sysctl exits 0 even when the
        kernel refuses the value.
        """
        self.say.cmd(shlex.join(["ip", "netns", "exec", self.ns(role), "sysctl", "-w", f"{key}={value}"]))
        try:
            with self.inside(role), open(_sysctl_path(key), "w") as f:
                f.write(str(value))
        except OSError as exc:
            raise LabError(f"sysctl {key}={value} in {self.ns(role)}: {exc.strerror}") from exc
        if shrink:
            self.shrunk[f"{role}: {key}"] = str(value)

    def try_sysctl(self, role: str, key: str, value: str | int) -> OSError | None:
        """Like sysctl(), but return the kernel's refusal instead of raising."""
        try:
            self.sysctl(role, key, value)
        except LabError as exc:
            self.say.note(str(exc))
            return exc.__cause__ if isinstance(exc.__cause__, OSError) else OSError(str(exc))
        return None

    def read_sysctl(self, role: str | None, key: str) -> str:
        if role is None:
            with open(_sysctl_path(key)) as f:
                return f.read().strip()
        with self.inside(role), open(_sysctl_path(key)) as f:
            return f.read().strip()

    def host_sysctl(self, key: str, value: str | int) -> None:
        """Change a host-wide sysctl; the original is recorded first and restored on exit."""
        path = _sysctl_path(key)
        with open(path) as f:
            original = f.read().strip()
        if key not in self.host_changes:
            self.host_changes[key] = original
            self.host_touched.setdefault(key, original)
            self.record.add_host_sysctl(key, original)
        self.say.cmd(f"sysctl -w {key}={value}    # HOST-WIDE; was {original}, restored on exit")
        with open(path, "w") as f:
            f.write(str(value))

    def restore_host_sysctls(self) -> None:
        for key, original in list(self.host_changes.items()):
            self.say.cmd(f"sysctl -w {key}={original}    # restore")
            with open(_sysctl_path(key), "w") as f:
                f.write(original)
            self.record.forget_host_sysctl(key)
            del self.host_changes[key]

    def nft(self, role: str, ruleset: str) -> None:
        """Load an nft ruleset (`nft -f -`) inside a namespace, printing it."""
        argv = ["ip", "netns", "exec", self.ns(role), "nft", "-f", "-"]
        self.say.cmd(shlex.join(argv) + " <<'EOF'")
        for line in ruleset.strip().splitlines():
            self.say.out.write(f"  {line}\n")
        self.say.out.write("  EOF\n")
        proc = subprocess.run(argv, input=ruleset, capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            raise LabError(f"nft -f in {self.ns(role)}: {proc.stderr.strip()}")

    # -- processes --------------------------------------------------------------

    def spawn(self, role: str, port: int, mode: str, **opts: int) -> App:
        argv = ["ip", "netns", "exec", self.ns(role), sys.executable, "-m", "halfopen.lab.apps",
                "--port", str(port), "--mode", mode]
        for k, v in opts.items():
            argv += [f"--{k}", str(v)]
        shown = [("python3" if a == sys.executable else a) for a in argv]
        self.say.cmd(shlex.join(shown) + " &")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                env=env, start_new_session=True)
        self.record.add_pid(proc.pid)
        app = App(proc, role)
        self.apps.append(app)
        if app.wait_event("ready", 10.0) is None:
            raise LabError(f"lab server ({mode}) in {self.ns(role)} did not start")
        self.say.note(f"server pid {proc.pid} ({mode}) listening on :{port}")
        return app

    @contextlib.contextmanager
    def inside(self, role: str) -> Iterator[None]:
        """This thread inside a lab namespace: sockets opened here live there."""
        with netns_mod.entered(netns_mod.named(self.ns(role))):
            yield

    # -- teardown ---------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Remove everything; returns what could not be removed (empty when clean)."""
        problems: list[str] = []
        for app in self.apps:
            stop_pid(app.proc.pid)
            with contextlib.suppress(Exception):
                app.proc.wait(timeout=3)
            for stream in (app.proc.stdin, app.proc.stdout):
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()
        for role, name in list(self.namespaces.items()):
            problems += remove_netns(name, self.say)
            del self.namespaces[role]
        try:
            self.restore_host_sysctls()
        except OSError as exc:
            problems.append(f"could not restore host sysctls: {exc}")
        problems += undo_fixes(run_dir(self.record.state.directory, self.run_id), self.say)
        return problems


def _sysctl_path(key: str) -> str:
    """"net.ipv4.conf.to-atk.rp_filter" -> "/proc/sys/net/ipv4/conf/to-atk/rp_filter"."""
    return "/proc/sys/" + key.replace(".", "/")


def undo_fixes(directory: str, say: Narrator | None = None) -> list[str]:
    """Roll back what `halfopen fix` changed on the host during a run (`halfopen fix
    --rollback`; changes inside lab namespaces went with them), then remove the run's
    directory. Returns the problems (empty when done)."""
    path = os.path.join(directory, JOURNAL)
    problems: list[str] = []
    if pending_host_entries(path):
        argv = ["halfopen", "fix", "--rollback", "--journal", path]
        if say is not None:
            say.cmd(shlex.join(argv))
        proc = subprocess.run([sys.executable, "-m", "halfopen.cli.main", *argv[1:]],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or pending_host_entries(path):
            problems.append(f"halfopen fix --rollback --journal {path} exit {proc.returncode}: "
                            f"{(proc.stderr.strip() or proc.stdout.strip())[-300:]}")
            return problems  # keep the journal for `halfopen lab clean`
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(directory)
    return problems


def stop_pid(pid: int, started: int | None = None) -> None:
    if started is not None and start_time(pid) != started:
        return  # gone, or the pid now names another process
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def remove_netns(name: str, say: Narrator | None = None) -> list[str]:
    """Kill what runs inside `name`, then `ip netns del` it."""
    if not os.path.exists(os.path.join(netns_mod.NETNS_RUN_DIR, name)):
        return []
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
    for pid in pids:
        stop_pid(int(pid))
    for _ in range(50):  # killed processes may take a moment to leave the namespace
        if not subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split():
            break
        time.sleep(0.05)
    argv = ["ip", "netns", "del", name]
    if say is not None:
        say.cmd(shlex.join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        return [f"{name}: {proc.stderr.strip()}"]
    return []
