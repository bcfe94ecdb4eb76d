"""One list of rule ids (model.rules), and the typed fix records the rules propose (model.fixes)."""

from __future__ import annotations

from halfopen.diagnose import registry
from halfopen.model.rules import CAUSES, RULE_IDS
from halfopen.model.subject import Subject


def test_registry_checks_every_rule_id_in_order():
    assert tuple(r.id for r in registry.RULES) == RULE_IDS
    assert all(r.cause == CAUSES[r.id] for r in registry.RULES)


def test_fix_records_round_trip_through_json_and_render_their_command():
    import json

    from halfopen.diagnose import common
    from halfopen.model import fixes

    made = [common.sysctl_fix("net.ipv4.tcp_keepalive_time", 300, "blue"),
            common.prlimit_fix(812, 65536, 524288),
            common.keepalive_fix(812, "dport = :5432", user_timeout_ms=30000),
            common.kill_fix("state close-wait pid 812")]
    for fix in made:
        params = json.loads(json.dumps(fix.params))  # what doctor --json carries
        change = fixes.change(fix.action, params)
        assert change.params() == fix.params and change.command() == fix.command
    assert made[2].command == ("halfopen keepalive --pid 812 --idle 60 --interval 10 --count 6 "
                               "--user-timeout 30000 'dport = :5432' --yes")
    # the key a finding writes (user_timeout) and the record's name both read back
    assert fixes.change("keepalive", {"pid": 1, "user_timeout_ms": 5}).settings.user_timeout_ms == 5


def test_fix_params_that_are_wrong_say_what_in_one_line():
    import pytest

    from halfopen.model import fixes

    for action, params, why in (("sysctl", {"value": 1}, "without a key"),
                                ("prlimit", {"pid": 5, "soft": 0}, "bad soft limit 0"),
                                ("prlimit", {"soft": 10}, "names no pid"),
                                ("keepalive", {"pid": 5, "idle": "x"}, "bad keepalive values")):
        with pytest.raises(ValueError, match=why):
            fixes.change(action, params)
    # the finding's subject names the pid and the namespace when the params do not
    c = fixes.change("kill", {"filter": "state close-wait"}, Subject("blue", 9))
    assert c.netns is not None and c.netns.name == "blue"
    assert fixes.change("prlimit", {"soft": 10}, Subject(pid=9)).pid == 9
