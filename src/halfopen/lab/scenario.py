"""What every scenario shares: its result record, checks, and client helpers.

A scenario is a module in halfopen.lab.scenarios with NAME, FINDINGS (the rule
ids it must produce), SUMMARY, and `run(ctx)`. It builds its topology through
`ctx.lab`, makes the failure happen, records direct checks of the symptom,
asks the doctor, applies the fix and records checks that the symptom is gone.
"""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from . import tools
from .topo import Lab

PHASES = ("symptom", "diagnosis", "cure")


@dataclass
class Check:
    phase: str  # one of PHASES
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


class Ctx:
    """Handed to a scenario's run(): the lab, the result, and ways to record checks."""

    def __init__(self, lab: Lab, result: Result) -> None:
        self.lab = lab
        self.result = result
        self.say = lab.say

    def check(self, phase: str, name: str, ok: bool | None, detail: str = "") -> bool:
        self.result.checks.append(Check(phase, name, ok, detail))
        mark = "skip" if ok is None else None
        text = f"{name}" + (f": {detail}" if detail else "")
        if mark:
            self.say.note(f"[skip] {text}")
        else:
            self.say.check(text, bool(ok))
        return bool(ok)

    def doctor(self, role: str, extra: list[str] | None = None) -> dict[str, Any]:
        self.say.step(f"diagnose: the doctor inside {self.lab.ns(role)}")
        report = tools.doctor(self.lab, role, extra)
        self.result.doctor = "ran"
        self.result.findings.extend(report.get("findings", []))
        return report

    def fix(self, role: str, finding: str, extra: list[str] | None = None) -> list[str]:
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

    def fact(self, **kw: Any) -> None:
        self.result.facts.update(kw)


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
