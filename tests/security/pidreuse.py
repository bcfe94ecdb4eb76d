"""Run as pid 1 of a new pid namespace (unshare --pid --fork --mount-proc):
a process is diagnosed and its limit raised by `fix` (journaled); it exits
and another gets its pid. `fix --findings --apply` must then skip every step,
and `fix --rollback` must not put the first one's old limit on the second.
Prints one JSON line with what happened."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from halfopen.kernel import current_identity
from halfopen.kernel import procfs as procfs

# A server that holds one ESTABLISHED connection to itself, with keepalive off
# and RLIMIT_NOFILE soft/hard from argv: every step of the findings would change it.
CHILD = """
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
cli = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()
print(srv.getsockname()[1], flush=True)
time.sleep(600)
"""


def spawn(soft: int, hard: int) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(soft), str(hard)],
                         stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


def halfopen(*argv: str) -> subprocess.CompletedProcess:
    # a script run inside its own pid namespace: tests.helpers is not importable here
    return subprocess.run([sys.executable, "-m", "halfopen", *argv], capture_output=True,
                          text=True, timeout=120)


def main(findings_path: str, journal: str) -> None:
    a, _port_a = spawn(1024, 4096)
    me = current_identity.process(a.pid)
    fixes = [
        {"action": "prlimit", "command": "", "automatic": True,
         "params": {"pid": a.pid, "resource": "nofile", "soft": 4096}},
        {"action": "keepalive", "command": "", "automatic": True,
         "params": {"pid": a.pid, "idle": 30, "interval": 5, "count": 3}},
        {"action": "kill", "command": "", "automatic": True,
         "params": {"filter": f"state established pid {a.pid}"}},
    ]
    finding = {"id": "close-wait-leak", "severity": "warning", "cause": "application",
               "title": f"pid {a.pid}", "subject": {"pid": a.pid, "comm": me.comm,
                                                      "netns": "host",
                                                      "start_time": me.start_time},
               "evidence": [], "fixes": fixes, "why": ""}
    with open(findings_path, "w") as f:
        json.dump({"schema": "halfopen.doctor/1", "findings": [finding]}, f)
    first = dict(finding, fixes=fixes[:1])  # the prlimit step, applied while it is a's
    with open(findings_path + ".prlimit", "w") as f:
        json.dump({"schema": "halfopen.doctor/1", "findings": [first]}, f)
    applied = halfopen("fix", "--findings", findings_path + ".prlimit", "--apply",
                       "--journal", journal + ".first")
    a_limits = list(resource.prlimit(a.pid, resource.RLIMIT_NOFILE))
    a.kill()
    a.wait()
    time.sleep(0.02)  # at least one clock tick: the new process's start time differs
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(a.pid - 1))  # the next fork in this pid namespace gets a.pid
    b, port_b = spawn(4096, 4096)  # what halfopen set on a: a rollback by pid would lower it
    proc = halfopen("fix", "--findings", findings_path, "--apply", "--json", "--journal", journal)
    rollback = halfopen("fix", "--rollback", "--journal", journal + ".first")
    ss = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port_b} or dport = :{port_b} )"],
                        capture_output=True, text=True).stdout
    print(json.dumps({"a": a.pid, "b": b.pid, "a_start": me.start_time,
                      "b_start": procfs.start_time(b.pid), "code": proc.returncode,
                      "out": proc.stdout, "err": proc.stderr,
                      "b_limits": list(resource.prlimit(b.pid, resource.RLIMIT_NOFILE)),
                      "applied": applied.returncode, "a_limits": a_limits,
                      "rollback": rollback.returncode, "rollback_out": rollback.stdout,
                      "b_established": len(ss.splitlines())}))
    b.kill()
    b.wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
