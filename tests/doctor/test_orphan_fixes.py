"""orphan-pressure's fixes answer what holds the orphans.

A FIN_WAIT2 pile held by the namespace's tcp_max_tw_buckets (tcp_fin_timeout <= 60)
is not relieved by raising the host-wide tcp_max_orphans: that fix is offered only
when orphans count against it. Otherwise `halfopen fix orphan-pressure --netns X`
would change the host for a pile inside X (the lab's orphans scenario).
"""

from __future__ import annotations

import json
import os

from halfopen.diagnose.context import Options
from halfopen.diagnose.report import diagnose
from halfopen.model.snapshot import Snapshot

CASES = os.path.join(os.path.dirname(__file__), "cases")


def _fixes(case: str) -> list[dict]:
    with open(os.path.join(CASES, f"{case}.json")) as f:
        snap = Snapshot.from_dict(json.load(f)["snapshot"])
    found = [f for f in diagnose(snap, Options()).findings if f.id == "orphan-pressure"]
    assert len(found) == 1, found
    return found[0].to_dict()["fixes"]


def _keys(fixes: list[dict]) -> dict[str, str]:
    return {fx["params"]["key"]: fx["params"]["netns"] for fx in fixes if fx["action"] == "sysctl"}


def test_pile_held_by_tw_buckets_in_the_checked_namespace_changes_only_that_namespace():
    # the only namespace read (as with `doctor --netns lab1`): its pile is the first finding
    fixes = _fixes("orphan-pressure-fin-wait2-relative")
    assert _keys(fixes) == {"net.ipv4.tcp_fin_timeout": "lab1"}
    assert any(fx["action"] == "code" for fx in fixes)


def test_orphans_against_tcp_max_orphans_still_offer_raising_it():
    keys = _keys(_fixes("orphan-pressure-fin-wait2"))
    assert keys.get("net.ipv4.tcp_max_orphans") == "host"
