"""The scenarios, in the order `halfopen lab list` shows them: one Scenario class each.

Adding one: a module here with a subclass of lab.scenario.Scenario (its NAME,
FINDINGS, SUMMARY, NEEDS and five phases), one entry below, and its row in
tests/lab/test_lab.py's EXPECT and docs/lab.md's table.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ...errors import UsageError

if TYPE_CHECKING:  # the names alone stay cheap to import (shell completion reads them)
    from ..scenario import Scenario

# scenario name -> "module:class" in this package (imported when run or listed)
SCENARIOS = {
    "leaky-server": "leaky_server:LeakyServer",
    "client-power-loss": "client_power_loss:ClientPowerLoss",
    "middlebox-timeout": "middlebox_timeout:MiddleboxTimeout",
    "syn-flood": "syn_flood:SynFlood",
    "accept-queue-overflow": "accept_queue:AcceptQueue",
    "time-wait-storm": "time_wait_storm:TimeWaitStorm",
    "conntrack-full": "conntrack_full:ConntrackFull",
    "orphans": "orphans:Orphans",
}


def load(name: str) -> type[Scenario]:
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r}; scenarios: {', '.join(SCENARIOS)}")
    module, cls = SCENARIOS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def all_scenarios() -> list[type[Scenario]]:
    return [load(name) for name in SCENARIOS]
