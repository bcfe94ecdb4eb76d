"""The fleet kit in deploy/: alert rules checked and unit-tested by promtool,
every metric used there exists in docs/metrics.md, units point at halfopen."""

from __future__ import annotations

import json
import re
import subprocess

from .conftest import ROOT

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "halfopen-alerts.yml"
RULE_IDS = ("close-wait-leak", "fd-leak", "dead-peer", "keepalive-off", "timeout-mismatch",
            "syn-flood", "accept-queue-overflow", "fd-exhaustion", "conntrack-exhaustion",
            "tcp-memory-pressure", "orphan-pressure", "memory-exhaustion", "time-wait-pressure",
            "kernel-warning", "kernel-tuning")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_promtool_check_rules():
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_test_rules():
    tests = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
    assert tests
    r = promtool("test", "rules", *map(str, tests))
    assert r.returncode == 0, r.stdout + r.stderr


def test_an_alert_for_every_finding_kind():
    text = RULES.read_text()
    for rid in RULE_IDS:
        assert f'halfopen_finding{{id="{rid}"' in text, rid


def documented_metrics() -> set[str]:
    return set(re.findall(r"`(halfopen_[a-z_]+)`", (ROOT / "docs" / "metrics.md").read_text()))


def test_rules_and_dashboard_use_documented_metrics():
    known = documented_metrics()
    dash = json.loads((DEPLOY / "grafana" / "halfopen-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = set()
    for text in [RULES.read_text(), *exprs]:
        used |= set(re.findall(r"\b(halfopen_[a-z_]+)", text))
    assert used - known == set()


def test_systemd_units_run_halfopen():
    exporter = (DEPLOY / "systemd" / "halfopen-exporter.service").read_text()
    watch = (DEPLOY / "systemd" / "halfopen-watch.service").read_text()
    assert re.search(r"^ExecStart=\S+/halfopen exporter --listen 127.0.0.1:9469$", exporter, re.M)
    assert re.search(r"^ExecStart=\S+/halfopen watch .*--record /var/lib/halfopen/\S+\.db", watch, re.M)
    for unit in (exporter, watch):
        assert "[Install]" in unit and "WantedBy=multi-user.target" in unit


def test_every_exported_metric_is_documented():
    from prometheus_client import CollectorRegistry, generate_latest

    from halfopen.watch import exporter

    from .samples import finding, make

    class Fixed:
        def collect(self):
            return exporter.families(make(1.0, close_wait=3, findings=[finding()]), top=5)

    reg = CollectorRegistry()
    reg.register(Fixed())
    text = generate_latest(reg).decode()
    exported = {re.split(r"[{ ]", line)[0] for line in text.splitlines() if line[:1] != "#"}
    exported.add("halfopen_scrape_duration_seconds")
    assert exported - documented_metrics() == set()
