"""One list of rule ids (model.rules): the registry checks each, in its order."""

from __future__ import annotations

from halfopen.diagnose import registry
from halfopen.model.rules import CAUSES, RULE_IDS


def test_registry_checks_every_rule_id_in_order():
    assert tuple(r.id for r in registry.RULES) == RULE_IDS
    assert all(r.cause == CAUSES[r.id] for r in registry.RULES)
