"""A real unprivileged local user and the processes it runs: the attacker of
issue 20's tests. The user is made with useradd for the test session and
removed after; its processes run Debian's /usr/bin/python3 (any user can),
name themselves through prctl(PR_SET_NAME) (what /proc/PID/comm shows) and
hold real sockets, so root's halfopen meets them as it would on a host."""

from __future__ import annotations

import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

USER_PYTHON = "/usr/bin/python3"

# argv[1]: the name (comm) as a Python bytes literal; argv[2]: soft RLIMIT_NOFILE
# (0: unchanged). Holds a listener, one CLOSE_WAIT socket (its peer closed) and
# one ESTABLISHED pair with keepalive off; prints the listener's port.
HOLDER = r"""
import ast, ctypes, resource, socket, sys, time
name = ast.literal_eval(sys.argv[1])
ctypes.CDLL(None, use_errno=True).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # PR_SET_NAME
soft = int(sys.argv[2])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(16)
port = srv.getsockname()[1]
a = socket.create_connection(("127.0.0.1", port)); a_in, _ = srv.accept(); a.close()   # a_in: CLOSE_WAIT
b = socket.create_connection(("127.0.0.1", port)); b_in, _ = srv.accept()              # ESTABLISHED
if soft:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    held = []
    try:
        while True:
            held.append(socket.socket())
    except OSError:
        pass
    held = held[: max(0, len(held) - 2)]
print(port, flush=True)
time.sleep(600)
"""


@dataclass(frozen=True)
class Attacker:
    name: str
    uid: int
    gid: int
    home: str

    def run(self, argv: list[str], **kw) -> subprocess.Popen:
        """A process of this user (not root, no supplementary groups)."""
        return subprocess.Popen(argv, user=self.uid, group=self.gid, extra_groups=[],
                                cwd=self.home, env={"PATH": "/usr/bin:/bin", "HOME": self.home}, **kw)

    @contextmanager
    def holder(self, comm: bytes, nofile_soft: int = 0) -> Iterator[tuple[subprocess.Popen, int]]:
        """A process of this user named `comm`, holding sockets; yields (process, port)."""
        p = self.run([USER_PYTHON, "-c", HOLDER, repr(comm), str(nofile_soft)],
                     stdout=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline() if p.stdout else ""
            assert line.strip().isdigit(), f"holder did not start: {line!r}"
            yield p, int(line)
        finally:
            p.kill()
            p.wait()


def _kill_processes_of(uid: int) -> None:
    """SIGKILL, by pid, every process whose real uid is `uid`: the user this fixture
    made moments ago, so all it runs was started by the tests (nginx workers forked by
    its nginx too). Nothing is matched by name."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                real = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
            if real == uid:
                os.kill(int(entry), 9)
        except (OSError, StopIteration, ValueError):
            continue  # gone meanwhile


@contextmanager
def make_attacker(base: str) -> Iterator[Attacker]:
    """useradd a fresh user with a home under `base` (mode 0755); userdel it after."""
    name = f"hoatk{uuid.uuid4().hex[:6]}"
    home = os.path.join(base, name)
    os.makedirs(home)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin",
                    "--user-group", name], check=True, capture_output=True)
    pw = pwd.getpwnam(name)
    try:
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o755)
        yield Attacker(name, pw.pw_uid, pw.pw_gid, home)
    finally:
        _kill_processes_of(pw.pw_uid)
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["rm", "-rf", home])
