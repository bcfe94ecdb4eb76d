"""The scenarios, in the order `halfopen lab list` shows them."""

from __future__ import annotations

import importlib
from types import ModuleType

from ...errors import UsageError

# scenario name -> module in this package
SCENARIOS = {
    "leaky-server": "leaky_server",
    "client-power-loss": "client_power_loss",
    "middlebox-timeout": "middlebox_timeout",
    "syn-flood": "syn_flood",
    "accept-queue-overflow": "accept_queue",
    "time-wait-storm": "time_wait_storm",
    "conntrack-full": "conntrack_full",
    "orphans": "orphans",
}


def load(name: str) -> ModuleType:
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario {name!r}; scenarios: {', '.join(SCENARIOS)}")
    return importlib.import_module(f"{__name__}.{SCENARIOS[name]}")


def all_modules() -> list[ModuleType]:
    return [load(name) for name in SCENARIOS]
