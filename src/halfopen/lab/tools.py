"""What the lab calls to look and to fix: the doctor, fix, kill, keepalive, ss, nstat.

halfopen's own commands are run as a person would run them (`halfopen doctor
--json --netns NAME`, `halfopen kill FILTER --yes --netns NAME`, `halfopen fix
ID --apply --netns NAME`, ...), in a subprocess, and their JSON is read back.
A command that fails stops the run with its exit code and stderr (LabError):
the lab proves these commands, so it never works around them.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Any

from ..collect import owners
from .state import journal_entries
from .topo import Lab, LabError

_HALFOPEN = [sys.executable, "-m", "halfopen.cli.main"]
# The lab's timers run in seconds, so the doctor's age thresholds (CLOSE_WAIT age, idle
# time, no-ACK time: 30 s to 10 min on a real host) are shrunk to match.
DOCTOR_MIN_AGE = 1
DOCTOR_WINDOW = 1.5  # counters sampled this far apart (the default is 3 s)


def _halfopen(lab: Lab, words: list[str], timeout: float = 90.0,
              ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    """Run `halfopen WORDS` (printed first); LabError unless its exit code is in `ok`."""
    lab.say.cmd(shlex.join(["halfopen", *words]))
    proc = subprocess.run([*_HALFOPEN, *words], capture_output=True, text=True, timeout=timeout)
    if proc.returncode not in ok:
        raise LabError(f"halfopen {words[0]} exit {proc.returncode}: "
                       f"{(proc.stderr.strip() or proc.stdout.strip())[-500:]}")
    return proc


def _json(proc: subprocess.CompletedProcess, what: str) -> dict[str, Any]:
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise LabError(f"{what} printed no JSON: {proc.stdout[:200]!r} {proc.stderr[-300:]!r}") from None


def doctor_words(lab: Lab) -> list[str]:
    lab.shrunk["doctor: --min-age (age thresholds, s)"] = str(DOCTOR_MIN_AGE)
    return ["--window", str(DOCTOR_WINDOW), "--min-age", str(DOCTOR_MIN_AGE)]


def doctor(lab: Lab, role: str, extra: list[str] | None = None) -> dict[str, Any]:
    """`halfopen doctor --json` for a lab namespace (exit 0-3 are verdicts, not failures)."""
    words = ["doctor", "--json", *doctor_words(lab), *(extra or []), "--netns", lab.ns(role)]
    report = _json(_halfopen(lab, words, ok=(0, 1, 2, 3)), "halfopen doctor")
    for f in report.get("findings", []):
        lab.say.note(f"finding {f.get('id')} [{f.get('severity')}]: {f.get('title')}")
    if not report.get("findings"):
        lab.say.note(f"doctor: status {report.get('status')}, no findings")
    return report


def kill(lab: Lab, role: str, words: list[str]) -> str:
    """Destroy sockets with `halfopen kill WORDS --yes --netns NS`."""
    proc = _halfopen(lab, ["kill", *words, "--yes", "--netns", lab.ns(role)])
    if proc.stdout.strip():
        lab.say.note(proc.stdout.strip().splitlines()[-1])
    return "halfopen kill"


def keepalive(lab: Lab, pid: int, idle: int, interval: int, count: int,
              words: list[str] | None = None) -> str:
    """Retrofit keepalive onto a running process with `halfopen keepalive --pid` (it finds
    the process's sockets in the process's own namespace)."""
    args = ["--pid", str(pid), "--idle", str(idle), "--interval", str(interval), "--count", str(count)]
    proc = _halfopen(lab, ["keepalive", *args, *(words or []), "--yes"])
    if proc.stdout.strip():
        lab.say.note(proc.stdout.strip().splitlines()[-1])
    return "halfopen keepalive"


def fix(lab: Lab, role: str, finding: str, extra: list[str] | None = None) -> list[str]:
    """`halfopen fix FINDING --apply --netns NS`: the doctor's automatic fixes for one
    namespace, journaled in the run's directory. Returns the changed keys/targets.

    The plan is read first (`halfopen fix FINDING --json --netns NS`, nothing changes):
    a change outside NS (a host-wide sysctl) stops the run before anything is applied;
    the journal is checked again after --apply, and teardown rolls back any host entry.
    """
    ns = lab.ns(role)
    common = [finding, *doctor_words(lab), *(extra or []), "--netns", ns]
    plan = _json(_halfopen(lab, ["fix", *common, "--json"]), "halfopen fix (plan)")
    changes = [s for s in plan.get("steps", []) if s.get("status") == "change"]
    for s in (s for s in plan.get("steps", []) if s.get("status") != "manual"):
        lab.say.note(f"plan: [{s.get('finding')}] {s.get('action')} {s.get('target')} "
                     f"({s.get('netns')}): {s.get('status')}"
                     + (f" {s.get('current')} -> {s.get('new')}" if s.get("status") == "change" else ""))
    outside = [s for s in changes if s.get("netns") != ns]
    if outside:
        raise LabError(f"halfopen fix {finding} --netns {ns} would change "
                       + ", ".join(f"{s['target']} in {s['netns']}" for s in outside)
                       + ": outside the lab's namespace; the lab does not apply it")
    if not changes:
        raise LabError(f"halfopen fix {finding} --netns {ns}: nothing to change "
                       f"({'; '.join(plan.get('notes', [])) or 'no automatic fix'})")
    jpath = lab.journal
    # exit 1: applied, and the doctor run again still sees a step's finding (fix.verify:
    # not-cured); the scenario's own checks judge the cure, so it goes on
    done = _json(_halfopen(lab, ["fix", *common, "--apply", "--journal", jpath, "--json"],
                           ok=(0, 1)), "halfopen fix --apply")
    for r in done.get("results", []):
        if r.get("outcome") != "manual":
            verified = f" (doctor again: {r['verified']})" if r.get("verified") else ""
            lab.say.note(f"{r.get('target')}: {r.get('outcome')} {r.get('detail', '')}".rstrip()
                         + verified)
    strays = [e for e in journal_entries(jpath) if e.get("netns") != ns]
    if strays:
        raise LabError(f"halfopen fix changed {strays[0].get('target')} in {strays[0].get('netns')}, "
                       f"outside {ns}: rolled back at clean-up")
    changed = [r["target"] for r in done.get("results", []) if r.get("outcome") == "set"]
    if not changed:
        raise LabError(f"halfopen fix {finding} --apply changed nothing: {done.get('results')}")
    return changed


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
    """How many socket fds `pid` holds (collect.owners' fd scan)."""
    scans, _ = owners.scan_fds(pids=[pid])
    return len(scans[0].socket_fds) if scans else 0


class Traced:
    """`halfopen WORDS` run in the background inside a lab namespace while a scenario
    acts (`doctor --trace S`, `trace --jsonl`): inside, so its owner lookups (sock_diag)
    see the namespace's sockets. `ip netns exec` gives it a mount namespace with a fresh
    /sys: it mounts tracefs there, and its instances are gone with it.

        with Traced(lab, "srv", ["trace", "--port", "80", "--jsonl"]) as t:
            ...                     # the trace is reading
        t.out                       # what it printed, once ended (SIGINT, or its own end)
    """

    def __init__(self, lab: Lab, role: str, words: list[str], ready_s: float = 30.0) -> None:
        self.lab = lab
        self.words = words
        self.ready_s = ready_s
        self.out = ""
        self.err = ""
        self.proc: subprocess.Popen | None = None
        self.argv = ["ip", "netns", "exec", lab.ns(role), *_HALFOPEN, *words]

    def __enter__(self) -> Traced:
        self.lab.say.cmd(shlex.join(["ip", "netns", "exec", self.argv[3], "halfopen", *self.words]) + " &")
        # SIGINT as at a terminal: the lab runner ignores it while it cleans up, and an
        # ignored SIGINT would stay ignored in the trace, which then could not be asked to end
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        # reading has begun once its instance exists (seen through its own root: its /sys)
        pid = self.proc.pid
        where = f"/proc/{pid}/root/sys/kernel/tracing/instances/halfopen-{pid}"
        deadline = time.monotonic() + self.ready_s
        while not os.path.isdir(where):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._end(signal.SIGKILL)
                raise LabError(f"halfopen {self.words[0]} did not start tracing: {self.err.strip()[-300:]}")
            time.sleep(0.05)
        time.sleep(0.5)  # its events enabled and its first owner lookup run
        return self

    def _end(self, sig: int, timeout: float = 90.0) -> None:
        assert self.proc is not None
        if self.proc.poll() is None and sig:
            self.proc.send_signal(sig)
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, self.err = self.proc.communicate(timeout=30)

    def __exit__(self, exc_type: object, *_rest: object) -> None:
        # on the scenario's failure (Ctrl-C too): interrupted as a person would (its
        # instances removed on the way out; killed only if it does not end); else a trace
        # is asked to end and a doctor left to finish its window
        if exc_type is not None:
            self._end(signal.SIGINT, timeout=30.0)
        else:
            self._end(signal.SIGINT if self.words[0] == "trace" else 0)

    def json(self) -> dict[str, Any]:
        try:
            return json.loads(self.out)
        except json.JSONDecodeError:
            raise LabError(f"halfopen {self.words[0]} printed no JSON: {self.out[:200]!r} "
                           f"{self.err[-300:]!r}") from None

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.startswith("{")]
