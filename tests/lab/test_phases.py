"""The Scenario base's contract, without namespaces: the phases in order, what they
hold let go on every exit path, a stopping check, the verdict; and the registry.

(tests/lab/test_lab.py runs every real scenario end to end, as root.)
"""

from __future__ import annotations

import io

import pytest

from halfopen.lab import scenarios
from halfopen.lab.scenario import PHASES, Result, Scenario
from halfopen.lab.topo import Narrator


class _Lab:
    """What the base itself reads of a Lab: its narrator."""

    def __init__(self) -> None:
        self.say = Narrator(io.StringIO())


class Recorder(Scenario):
    NAME = "recorder"
    FINDINGS = ()
    SUMMARY = "records what ran"

    def __init__(self, stop_in: str = "", fail_in: str = "", raise_in: str = "") -> None:
        super().__init__(_Lab(), Result(scenario=self.NAME, run_id="0000", expect=[]))
        self.ran: list[str] = []
        self.stop_in, self.fail_in, self.raise_in = stop_in, fail_in, raise_in

    def _phase(self, name: str) -> None:
        self.ran.append(name)
        self.cleanup.callback(self.ran.append, f"let go of {name}")
        self.check("symptom", f"{name} ok", name != self.fail_in)
        if name == self.stop_in:
            self.stop("cure", f"{name} cannot go on", "why")
        if name == self.raise_in:
            raise RuntimeError(name)

    def build(self) -> None:
        self._phase("build")

    def break_(self) -> None:
        self._phase("break_")

    def diagnose(self) -> None:
        self._phase("diagnose")

    def fix(self) -> None:
        self._phase("fix")

    def verify(self) -> None:
        self._phase("verify")


LET_GO = [f"let go of {p}" for p in reversed(PHASES)]


def test_phases_run_in_order_then_what_they_hold_is_let_go():
    s = Recorder()
    s.run()
    assert s.ran == [*PHASES, *LET_GO]
    assert s.result.verdict == "cured"
    assert "[ok] verify ok" in s.say.out.getvalue()


def test_a_failed_check_does_not_stop_the_run():
    s = Recorder(fail_in="diagnose")
    s.run()
    assert s.ran == [*PHASES, *LET_GO]
    assert s.result.verdict == "not cured"


def test_stop_ends_the_run_there_and_still_lets_go():
    s = Recorder(stop_in="diagnose")
    s.run()
    assert s.ran == ["build", "break_", "diagnose", *LET_GO[2:]]
    assert s.result.verdict == "not cured"
    last = s.result.checks[-1]
    assert (last.phase, last.name, last.ok, last.detail) == ("cure", "diagnose cannot go on", False, "why")


def test_an_exception_goes_on_to_the_runner_after_letting_go():
    s = Recorder(raise_in="fix")
    with pytest.raises(RuntimeError, match="fix"):
        s.run()
    assert s.ran == ["build", "break_", "diagnose", "fix", *LET_GO[1:]]
    assert s.result.verdict == "error"  # the runner's to say


def test_every_registered_scenario_is_a_scenario_named_by_its_key():
    for name in scenarios.SCENARIOS:
        cls = scenarios.load(name)
        assert issubclass(cls, Scenario)
        assert name == cls.NAME
        assert cls.FINDINGS and cls.SUMMARY
