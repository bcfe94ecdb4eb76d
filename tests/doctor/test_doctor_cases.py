"""Recorded cases: one JSON file per case under cases/ (snapshot in, findings out).

Regenerate the files with `python3 tests/doctor/make_cases.py`.
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from halfopen.diagnose import middlebox
from halfopen.diagnose.context import Options
from halfopen.diagnose.registry import RULE_IDS
from halfopen.diagnose.report import diagnose
from halfopen.model.nginx import NginxConf
from halfopen.model.snapshot import Snapshot

CASES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "cases", "*.json")))


def _run(case: dict):
    opts = case.get("options") or {}
    options = Options(pid=opts.get("pid"), port=opts.get("port"),
                      middleboxes=tuple(middlebox.parse(m) for m in opts.get("middleboxes", [])),
                      min_age_s=opts.get("min_age_s"))
    nginx = NginxConf.from_dict(case["nginx"]) if case.get("nginx") else None
    return diagnose(Snapshot.from_dict(case["snapshot"]), options, nginx=nginx)


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-5] for p in CASES])
def test_case(path):
    with open(path) as f:
        case = json.load(f)
    report = _run(case)
    got = [(f.id, f.severity, f.subject.to_dict(), f.to_dict()["fixes"])
           for f in report.findings]
    for want in case["expect"]:
        # "fix": params one of the finding's fixes must have (e.g. a sysctl's netns)
        match = [g for g in got if g[0] == want["id"]
                 and ("severity" not in want or g[1] == want["severity"])
                 and all(g[2].get(k) == v for k, v in want.get("subject", {}).items())
                 and ("fix" not in want or any(
                     all(fx["params"].get(k) == v for k, v in want["fix"].items())
                     for fx in g[3]))]
        assert match, f"{case['description']}\nwant {want}\ngot {got}"
    for bad in case.get("not_expect", []):  # findings that must not be there (any severity)
        assert not [g for g in got if g[0] == bad["id"] and all(
            g[2].get(k) == v for k, v in bad.get("subject", {}).items())], (bad, got)
    for rid in case["absent"]:
        assert rid not in {g[0] for g in got if g[1] != "info"}, (case["description"], got)
    if case.get("status") == "info-or-ok":
        assert report.status == "ok"
    elif case.get("status"):
        assert report.status == case["status"], (case["description"], got)
    for f in report.findings:  # every finding has the docs/design.md shape
        d = f.to_dict()
        assert d["id"] in RULE_IDS and d["title"] and d["cause"]
        assert d["severity"] in ("info", "warning", "critical", "unknown")
        if d["severity"] != "unknown":
            assert d["why"] and d["evidence"], d["id"]
        for fx in d["fixes"]:
            assert fx["command"]
            if fx["action"] == "sysctl":
                assert set(fx["params"]) == {"key", "value", "netns"} and fx["automatic"]
            if fx["action"] == "prlimit":
                assert fx["params"]["resource"] == "nofile" and fx["params"]["soft"] > 0
            if fx["action"] in ("config", "code"):
                assert not fx["automatic"]


def test_every_rule_id_is_registered_and_documented():
    docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "rules")
    for rid in RULE_IDS:
        assert os.path.exists(os.path.join(docs, f"{rid}.md")), rid


def _case(name: str) -> dict:
    with open(os.path.join(os.path.dirname(__file__), "cases", f"{name}.json")) as f:
        return json.load(f)


def test_outbound_case_names_the_service_and_the_servers_timeout():
    """The recorded pool against nginx on this host: the title and evidence say it all."""
    f = [x for x in _run(_case("close-wait-outbound-nginx-timeout")).findings
         if x.id == "close-wait-leak"][0]
    assert f.title.startswith("java (pid 901) is the client: 4 CLOSE_WAIT connections to "
                              "10.0.0.1:80 that the server closed after its 15s "
                              "`keepalive_timeout` (nginx)")
    ev = {e.what: (e.value, e.source) for e in f.evidence}
    assert ev["server_keepalive_timeout_s"] == (15.0, "nginx configuration (http)")
    assert ev["destinations"][0] == [["10.0.0.1:80", 4]]
    assert ("below the server's keepalive timeout (15s `keepalive_timeout` (nginx)), e.g. 12s"
            in f.fixes[1].command)
    assert "keep-alive timeout" in f.why and "pool" in f.why


def test_young_close_wait_case_is_said_not_silent():
    f = [x for x in _run(_case("close-wait-young-is-not-a-leak")).findings
         if x.id == "close-wait-leak"][0]
    assert f.severity == "info"
    assert f.title == ("nginx (pid 812) holds 50 CLOSE_WAIT sockets younger than 30s, oldest "
                       "2.0s: not yet judged; run again, or lower --min-age")


def test_outbound_pool_that_grows_is_critical():
    """The same pool, with `watch --record` history showing it grow: critical, not warning."""
    from halfopen.diagnose.context import Context
    from halfopen.model.history import History

    case = _case("close-wait-outbound-nginx-timeout")
    snap = Snapshot.from_dict(case["snapshot"])
    now = Context(snap).now
    grown = History(source="recorded")
    for minutes_ago, held in ((30, 1), (20, 2), (10, 3)):
        grown.add(901, "close_wait", now - minutes_ago * 60, held)
    flat = History(source="recorded")
    for minutes_ago in (30, 20, 10):
        flat.add(901, "close_wait", now - minutes_ago * 60, 4)
    nginx = NginxConf.from_dict(case["nginx"])
    for history, want in ((grown, "critical"), (flat, "warning")):
        report = diagnose(snap, Options(), history, nginx=nginx)
        f = [x for x in report.findings if x.id == "close-wait-leak"][0]
        assert f.severity == want and f.subject.direction == "out", (want, f.title)
    ev = {e.what: e.value for e in f.evidence}
    assert ev["close_wait_growth_per_hour"] == 0.0  # the flat one: measured, not guessed
