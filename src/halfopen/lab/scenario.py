"""What every scenario shares: the phases in order, the result record, checks, client helpers.

A scenario is one class in halfopen.lab.scenarios, a Scenario with NAME, FINDINGS
(the rule ids it must produce), SUMMARY, NEEDS (tools beyond ip, ss, nstat and
sysctl) and five phases, which Scenario.run() calls in this order:

    build      the healthy system: namespaces, links, servers (through `self.lab`)
    break_     make the failure happen
    diagnose   see the symptom directly (checks), then ask the doctor
    fix        halfopen's own fix, or the application's
    verify     see the symptom gone (checks)

A phase keeps on `self` what a later one needs and hands what must be let go
(sockets, processes, a host sysctl) to `self.cleanup`, which lets it go once the
phases end, on success, on failure and on Ctrl-C alike. A failed check that
leaves the later phases nothing to work on ends the run there (`stop`). The
verdict comes from the checks; the runner adds the teardown and the summary.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, NoReturn

from . import tools
from .topo import Lab

PHASES = ("build", "break_", "diagnose", "fix", "verify")  # a Scenario's, in order
CHECK_PHASES = ("symptom", "diagnosis", "cure")  # what a Check proves


@dataclass
class Check:
    phase: str  # one of CHECK_PHASES
    name: str
    ok: bool | None  # None: could not be checked (said why in detail)
    detail: str = ""


@dataclass
class Result:
    scenario: str
    run_id: str
    expect: list[str]
    doctor: str = "absent"  # "ran" | "absent"
    findings: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    shrunk: dict[str, str] = field(default_factory=dict)
    host_changes: dict[str, str] = field(default_factory=dict)
    fixed_by: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # pids, ports, counts the tests read
    verdict: str = "error"  # "cured" | "not cured" | "error" | "interrupted"
    error: str = ""
    leftovers: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema"] = "halfopen.lab/1"
        return d

    def passed(self) -> bool:
        return self.verdict == "cured"


class Stop(Exception):
    """A failed check after which the later phases have nothing to work on."""


class Scenario(abc.ABC):
    """One failure, reproduced in the lab: the five phases, and ways to record checks."""

    NAME: ClassVar[str]
    FINDINGS: ClassVar[tuple[str, ...]]  # the rule ids the doctor must name
    SUMMARY: ClassVar[str]
    NEEDS: ClassVar[tuple[str, ...]] = ()  # tools beyond ip, ss, nstat, sysctl

    def __init__(self, lab: Lab, result: Result) -> None:
        self.lab = lab
        self.result = result
        self.say = lab.say
        self.cleanup = contextlib.ExitStack()  # what the phases hold, let go at the end

    @abc.abstractmethod
    def build(self) -> None:
        """The healthy system: namespaces, links, servers."""

    @abc.abstractmethod
    def break_(self) -> None:
        """Make the failure happen."""

    @abc.abstractmethod
    def diagnose(self) -> None:
        """See the symptom directly (checks), then ask the doctor."""

    @abc.abstractmethod
    def fix(self) -> None:
        """Apply the fix."""

    @abc.abstractmethod
    def verify(self) -> None:
        """See the symptom gone (checks)."""

    def run(self) -> None:
        """The phases in order, what they hold let go on every exit path, the verdict
        from the checks. An exception goes on to the runner (verdict error)."""
        with self.cleanup:
            try:
                for phase in PHASES:
                    getattr(self, phase)()
            except Stop:
                pass  # its failed check is recorded: the verdict says "not cured"
        failed = any(c.ok is False for c in self.result.checks)
        self.result.verdict = "not cured" if failed else "cured"

    # -- recording ----------------------------------------------------------------

    def check(self, phase: str, name: str, ok: bool | None, detail: str = "") -> bool:
        self.result.checks.append(Check(phase, name, ok, detail))
        mark = "skip" if ok is None else None
        text = f"{name}" + (f": {detail}" if detail else "")
        if mark:
            self.say.note(f"[skip] {text}")
        else:
            self.say.check(text, bool(ok))
        return bool(ok)

    def stop(self, phase: str, name: str, detail: str = "") -> NoReturn:
        """Record a failed check and end the run: nothing after it can be shown."""
        self.check(phase, name, False, detail)
        raise Stop(name)

    def fact(self, **kw: Any) -> None:
        self.result.facts.update(kw)

    # -- halfopen's own commands --------------------------------------------------

    def doctor(self, role: str, extra: list[str] | None = None) -> dict[str, Any]:
        self.say.step(f"diagnose: the doctor inside {self.lab.ns(role)}")
        report = tools.doctor(self.lab, role, extra)
        self.result.doctor = "ran"
        self.result.findings.extend(report.get("findings", []))
        return report

    def halfopen_fix(self, role: str, finding: str, extra: list[str] | None = None) -> list[str]:
        """Apply the doctor's automatic fixes for `finding` in one namespace (`halfopen fix`)."""
        changed = tools.fix(self.lab, role, finding, extra)
        self.result.fixed_by.append(f"halfopen fix {finding}: {', '.join(changed)}")
        return changed

    def expect(self, report: dict[str, Any], rule: str, **subject: Any) -> bool:
        """Record that the doctor named `rule` with this subject."""
        for f in report.get("findings", []):
            if f.get("id") != rule:
                continue
            got = f.get("subject", {})
            if all(_same(got.get(k), v) for k, v in subject.items()):
                shown = ", ".join(f"{k}={got.get(k)}" for k in subject) or f.get("title", "")
                ok = self.check("diagnosis", f"doctor names {rule}", True, shown)
                for fix in f.get("fixes", [])[:2]:
                    first = str(fix.get("command", "")).splitlines()[0] if fix.get("command") else ""
                    self.say.note(f"    its fix: {first}")
                return ok
        ids = sorted({f.get("id") for f in report.get("findings", [])})
        want = ", ".join(f"{k}={v}" for k, v in subject.items())
        return self.check("diagnosis", f"doctor names {rule}", False,
                          f"wanted subject {want or 'any'}; doctor found {ids or 'nothing'}")

    def refute(self, report: dict[str, Any], rule: str, why: str) -> bool:
        """Record that the doctor did NOT name `rule` (a wrong diagnosis)."""
        found = any(f.get("id") == rule for f in report.get("findings", []))
        return self.check("diagnosis", f"doctor does not name {rule}", not found, why)

    # -- clients --------------------------------------------------------------------

    def hold(self, sock: socket.socket) -> socket.socket:
        """`sock`, closed when the scenario ends (if nothing closed it before)."""
        self.cleanup.callback(sock.close)
        return sock

    def connected(self, role: str, addr: str, port: int, timeout: float, check: str,
                  phase: str = "symptom", failed: str = "") -> socket.socket:
        """A socket connected from inside `role`, held; a failure to connect is the
        failed check `check` (detail: `failed` and the errno), which stops the run."""
        with self.lab.inside(role):
            s = connect(addr, port, timeout=timeout)
        if isinstance(s, int):
            self.stop(phase, check, failed + errname(s))
        return self.hold(s)


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, int) and not isinstance(want, bool):
        try:
            return int(got) == want
        except (TypeError, ValueError):
            return False
    return got == want


# -- client helpers (run inside a lab namespace via lab.inside) ---------------------

def connect(addr: str, port: int, timeout: float = 1.0, **sockopts: Any) -> socket.socket | int:
    """A connected socket, or the errno number of the failure (ETIMEDOUT on timeout)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
    except socket.timeout:
        s.close()
        return errno.ETIMEDOUT
    except OSError as exc:
        s.close()
        return exc.errno or errno.EIO
    return s


def errname(e: int) -> str:
    return errno.errorcode.get(e, str(e))


def wait_until(pred, timeout: float, step: float = 0.2) -> tuple[bool, float]:
    """Poll `pred` until true or `timeout` s; returns (became true, seconds waited)."""
    t0 = time.monotonic()
    while True:
        if pred():
            return True, time.monotonic() - t0
        if time.monotonic() - t0 >= timeout:
            return False, time.monotonic() - t0
        time.sleep(step)
