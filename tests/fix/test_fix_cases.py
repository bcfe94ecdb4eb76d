"""The plans of the fix actions, pyinfra-style: each case is one JSON file in cases/.

    {"about": "...", "finding": {"id", "title", "subject"},
     "fix": {"action", "params"},           what the rule proposed
     "facts": {...},                        what the action's read() would find now
     "step": {...}, "change": {...}|null}   the Step (as `fix --json` prints it) and its
                                            typed record (as the journal would keep it)
     or "error": "..."                      the one line a bad fix is refused with

Only the pure half runs here (facts -> compare -> Step); the live tests beside this
file read the same facts from real processes, namespaces and sockets.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from halfopen.errors import UsageError
from halfopen.fix import plan
from halfopen.fix.actions import FIXES
from halfopen.model.finding import Finding, Fix
from halfopen.model.subject import Subject

CASES = sorted((pathlib.Path(__file__).parent / "cases").glob("*.json"))


def load(path: pathlib.Path) -> dict:
    case = json.loads(path.read_text())
    assert set(case) <= {"about", "finding", "fix", "facts", "step", "change", "error"}, path
    assert ("error" in case) != ("step" in case), f"{path.name}: a step or an error"
    return case


def planned(case: dict):
    f, x = case["finding"], case["fix"]
    finding = Finding(f["id"], "warning", "cause", f["title"], Subject.from_dict(f["subject"]), [],
                      [Fix(x["action"], "", True, x["params"])], "why")
    action, change = plan.proposal(finding, finding.fixes[0])
    return action.compare(finding, change, action.facts_from_dict(case["facts"]))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path):
    case = load(path)
    if "error" in case:
        with pytest.raises(UsageError) as exc:
            planned(case)
        assert case["error"] in str(exc.value) and "\n" not in str(exc.value)
        return
    step = planned(case)
    assert step.to_dict() == case["step"]
    got = None if step.change is None else json.loads(json.dumps(step.change.to_dict()))
    assert got == case["change"]


def test_every_action_has_cases_for_each_outcome():
    """A new action comes with its cases: a change, and a skip or a manual step."""
    seen: dict[str, set[str]] = {}
    for path in CASES:
        case = load(path)
        status = case["step"]["status"] if "step" in case else "error"
        seen.setdefault(case["fix"]["action"], set()).add(status)
    assert set(seen) == set(FIXES)
    for action, statuses in seen.items():
        assert {"change", "already set"} <= statuses, action
        assert statuses & {"skipped", "manual"}, action
