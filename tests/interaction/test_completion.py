"""Shell completion offers values, as bash asks for them (click's bash_complete protocol):
filter words, state names, rule ids, scenario names, perfdata labels, middlebox presets."""

from __future__ import annotations

import pytest
from tests.helpers import run_halfopen

from halfopen.diagnose.registry import RULE_IDS
from halfopen.lab.scenarios import SCENARIOS


def complete(line: str) -> list[str]:
    """What bash's completion function would get for the cursor at the end of `line`."""
    words = line.split(" ")
    r = run_halfopen(env={"_HALFOPEN_COMPLETE": "bash_complete", "COMP_WORDS": line,
                          "COMP_CWORD": str(len(words) - 1)})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    items = [row.split(",", 1) for row in r.stdout.splitlines() if row]
    assert all(kind == "plain" for kind, _ in items), items
    return [value for _, value in items]


@pytest.mark.parametrize("line, want", [
    ("halfopen sockets state clo", ["closed", "close-wait", "closing"]),
    ("halfopen kill -n 1 exclude time", ["time-wait"]),
    ("halfopen sockets sp", ["sport"]),
    ("halfopen sockets state established co", ["comm", "container"]),
    ("halfopen sockets dport ", []),  # a port comes next: nothing to guess
    ("halfopen doctor -c fd", ["fd_use_process_max="]),
    ("halfopen doctor --warning close", ["close_wait=", "close_wait_process_max="]),
    ("halfopen doctor --middlebox aws-n", ["aws-nlb"]),
])
def test_values(line, want):
    assert complete(line) == want


def test_rule_ids_and_scenarios():
    assert complete("halfopen fix ") == list(RULE_IDS)
    assert complete("halfopen fix close-w") == [r for r in RULE_IDS if r.startswith("close-w")]
    assert complete("halfopen lab run ") == list(SCENARIOS)
    assert complete("halfopen lab run syn") == ["syn-flood"]
