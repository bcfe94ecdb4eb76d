"""deploy/prometheus and deploy/grafana as an operator meets them: every finding alert
has a warning and a critical rule on the severity value and a runbook that exists;
a real Alertmanager with deploy/prometheus/alertmanager.yml inhibits what it says;
the dashboard is on $__rate_interval with job/instance/netns/pod variables."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.helpers import wait_for

from .conftest import free_port, start_process, stop_group

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RUNBOOK_BASE = "https://github.com/halfopen/halfopen/blob/main/docs/rules/"


def finding_rules() -> list[dict]:
    groups = yaml.safe_load((PROM / "halfopen-alerts.yml").read_text())["groups"]
    (group,) = [g for g in groups if g["name"] == "halfopen-findings"]
    return group["rules"]


def test_each_rule_id_pages_warning_then_critical_on_one_series():
    from halfopen.diagnose.registry import RULE_IDS

    by_id: dict[str, list[dict]] = {}
    for rule in finding_rules():
        by_id.setdefault(rule["labels"]["rule_id"], []).append(rule)
    assert sorted(by_id) == sorted(RULE_IDS)
    for rid, rules in by_id.items():
        assert [(r["labels"]["severity"], r["expr"]) for r in rules] == [
            ("warning", f'halfopen_finding{{id="{rid}"}} >= 1'),
            ("critical", f'halfopen_finding{{id="{rid}"}} >= 2')], rid
        assert len({r["alert"] for r in rules}) == 1  # one alert name: inhibit rule 1 pairs them
        url = rules[0]["annotations"]["runbook_url"]
        assert url == RUNBOOK_BASE + f"{rid}.md"
        assert (ROOT / "docs" / "rules" / f"{rid}.md").is_file()
        assert all("$value" not in str(r["labels"]) for r in rules)  # a label from $value splits alerts


def test_dashboard_variables_rate_interval_and_legends():
    dash = json.loads((ROOT / "deploy" / "grafana" / "halfopen-dashboard.json").read_text())
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "job", "instance", "netns", "pod"]
    for target in (t for p in dash["panels"] for t in p["targets"]):
        expr = target["expr"]
        assert 'job=~"$job"' in expr and 'instance=~"$instance"' in expr, expr
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", expr
        if "legendFormat" in target:
            assert target["legendFormat"].startswith("{{instance}}"), target
    assert sum("$__rate_interval" in t["expr"] for p in dash["panels"] for t in p["targets"]) >= 6


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")
def test_amtool_accepts_the_alertmanager_config():
    r = subprocess.run(["amtool", "check-config", str(PROM / "alertmanager.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def alert(name: str, severity: str, **labels: str) -> dict:
    base = {"instance": "web1:9469", "job": "halfopen", "comm": "nginx", "unit": "nginx.service"}
    merged = {"alertname": name, "severity": severity, **base, **labels}
    return {"labels": {k: v for k, v in merged.items() if v},  # as Prometheus: no empty labels
            "annotations": {"summary": name}}


@contextlib.contextmanager
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager with deploy/prometheus/alertmanager.yml on a loopback port and
    its own storage, no cluster; yields its API v2 URL and is always stopped."""
    if shutil.which("prometheus-alertmanager") is None:
        pytest.skip("prometheus-alertmanager not installed (scripts/install-deps --test)")
    port = free_port()
    am = start_process(["prometheus-alertmanager", f"--config.file={PROM / 'alertmanager.yml'}",
                        f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{port}",
                        "--cluster.listen-address="], tmp_path / "am.log")
    try:
        def ready():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for("alertmanager ready", ready, timeout=60, step=0.5)
        yield f"http://127.0.0.1:{port}/api/v2"
    finally:
        stop_group(am)


def post(api: str, alerts: list[dict]) -> None:
    req = urllib.request.Request(f"{api}/alerts", data=json.dumps(alerts).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def get_alerts(api: str) -> list[dict]:
    """Every alert Alertmanager holds; status.state "suppressed" when an inhibit rule
    mutes it (the API asks the inhibitor for each alert it returns)."""
    with urllib.request.urlopen(f"{api}/alerts", timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None,
                    reason="prometheus-alertmanager not installed (scripts/install-deps --test)")
def test_a_real_alertmanager_inhibits_the_overlapping_pairs(tmp_path):
    cwl = {"id": "close-wait-leak", "netns": "host", "port": "8080"}
    fdx = {"id": "fd-exhaustion", "netns": "host"}
    syn = {"id": "syn-flood", "netns": "host", "port": "443", "comm": "haproxy",
           "unit": "haproxy.service"}
    aq = {**syn, "id": "accept-queue-overflow"}
    ct = {"id": "conntrack-exhaustion", "netns": "host", "comm": "", "unit": ""}
    tm = {"id": "timeout-mismatch", "netns": "host", "comm": "", "unit": ""}
    sent = {
        "cwl-warning": alert("HalfopenCloseWaitLeak", "warning", **cwl),
        "cwl-critical": alert("HalfopenCloseWaitLeak", "critical", **cwl),
        "fdx-critical": alert("HalfopenFdExhaustion", "critical", **fdx),
        "fdx-other-unit": alert("HalfopenFdExhaustion", "warning", **{**fdx, "unit": "x.service"}),
        "syn-flood": alert("HalfopenSynFlood", "critical", **syn),
        "syn-flood-other-port": alert("HalfopenSynFlood", "warning", **{**syn, "port": "80"}),
        "accept-queue": alert("HalfopenAcceptQueueOverflow", "critical", **aq),
        "conntrack": alert("HalfopenConntrackExhaustion", "critical", **ct),
        "timeout-mismatch": alert("HalfopenTimeoutMismatch", "warning", **tm),
    }
    with alertmanager(tmp_path) as api:
        post(api, list(sent.values()))

        def states():
            got = get_alerts(api)
            if len(got) < len(sent):
                return None
            out = {}
            for a in got:
                (key,) = [k for k, v in sent.items() if v["labels"] == a["labels"]]
                out[key] = a["status"]["state"]
            return out

        got = wait_for("the alerts and their inhibitions", lambda: (lambda s: s if s and all(
            s.get(k) == "suppressed" for k in ("cwl-warning", "fdx-critical", "syn-flood")) else None)(
            states()), timeout=30, step=0.5)
        assert got == {
            "cwl-warning": "suppressed",  # its critical fires: one problem, one alert
            "cwl-critical": "active",
            "fdx-critical": "suppressed",  # the critical leak of the same process names the cause
            "fdx-other-unit": "active",  # another service's fds: not this leak's symptom
            "syn-flood": "suppressed",  # the full accept queue on the same port is the cause
            "syn-flood-other-port": "active",
            "accept-queue": "active",
            "conntrack": "active",  # not inhibited either way: two problems, two fixes
            "timeout-mismatch": "active",
        }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_the_escalation_test_fails_for_rules_that_split_on_severity(tmp_path):
    """The promtool escalation case can fail: with the warning rule on `== 1` (an alert
    per severity, the old way) the warning resolves at the escalation and the test says so."""
    rules = (PROM / "halfopen-alerts.yml").read_text()
    split = rules.replace('{id="close-wait-leak"} >= 1', '{id="close-wait-leak"} == 1')
    assert split != rules
    (tmp_path / "halfopen-alerts.yml").write_text(split)
    (tmp_path / "tests").mkdir()
    test = tmp_path / "tests" / "escalation.yml"
    test.write_text((PROM / "tests" / "halfopen-alerts-test.yml").read_text())
    r = subprocess.run(["promtool", "test", "rules", str(test)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path / "tests")
    assert r.returncode != 0
    assert "alertname: HalfopenCloseWaitLeak, time: 5m" in r.stdout + r.stderr
    ok = subprocess.run(["promtool", "test", "rules", "halfopen-alerts-test.yml"],
                        capture_output=True, text=True, timeout=60, cwd=PROM / "tests")
    assert ok.returncode == 0, ok.stdout + ok.stderr


# -- one page per problem, every alert with its runbook -------------------------------

DOCS_BASE = "https://github.com/halfopen/halfopen/blob/main/docs/"


def all_rules() -> list[dict]:
    groups = yaml.safe_load((PROM / "halfopen-alerts.yml").read_text())["groups"]
    return [r for g in groups for r in g["rules"]]


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as -."""
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, re.M)}


def test_every_alert_has_summary_description_and_a_runbook_that_exists():
    rules = all_rules()
    assert len({r["alert"] for r in rules}) == 29
    for rule in rules:
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"], rule["alert"]
        url = ann["runbook_url"]
        assert url.startswith(DOCS_BASE), (rule["alert"], url)
        page, _, anchor = url[len(DOCS_BASE):].partition("#")
        path = ROOT / "docs" / page
        assert path.is_file(), (rule["alert"], url)
        if anchor:
            assert anchor in heading_anchors(path.read_text()), (rule["alert"], url)
            assert anchor == rule["alert"].lower()  # the page has a section per alert


def expected_alerts(test_file: str, eval_time: str) -> list[dict]:
    """The alerts a promtool test file expects at `eval_time`, as Prometheus would send
    them to Alertmanager (alertname and labels)."""
    doc = yaml.safe_load((PROM / "tests" / test_file).read_text())
    out = []
    for group in doc["tests"]:
        for case in group["alert_rule_test"]:
            if case["eval_time"] != eval_time:
                continue
            for a in case["exp_alerts"]:
                labels = {"alertname": case["alertname"], **{k: str(v) for k, v in a["exp_labels"].items()}}
                out.append({"labels": labels, "annotations": a["exp_annotations"]})
    return out


def test_one_page_per_problem_after_alertmanager(tmp_path):
    """What promtool proves fires at 10 minutes in one-page-test.yml (conntrack at 96 %,
    file handles at 96 %, a process's fds at 96 % and growing, a full accept queue; with
    and without the doctor), sent to a real Alertmanager with the shipped inhibit rules:
    each problem keeps exactly one active alert, and it is critical."""
    sent = expected_alerts("one-page-test.yml", "10m")
    assert len(sent) == 12  # edge1: 2+4+1+1 with the finding warnings, edge2: 4
    problem = {
        "HalfopenConntrackExhaustion": "conntrack", "HalfopenConntrackNearFull": "conntrack",
        "HalfopenFileHandlesNearMax": "fds", "HalfopenFdExhaustion": "fds",
        "HalfopenFdExhaustionSoon": "fds",
        "HalfopenAcceptQueueFull": "accept-queue", "HalfopenAcceptQueueOverflow": "accept-queue",
    }
    with alertmanager(tmp_path) as api:
        post(api, sent)

        def settled():
            got = get_alerts(api)
            if len(got) < len(sent) or any(a["status"]["state"] == "unprocessed" for a in got):
                return None
            active = [a["labels"] for a in got if a["status"]["state"] == "active"]
            return active if len(active) <= 8 else None

        active = wait_for("inhibitions applied", settled, timeout=30, step=0.5)
    pages = sorted((a["instance"], problem[a["alertname"]], a.get("comm", ""), a["severity"])
                   for a in active)
    assert pages == [
        ("edge1:9469", "accept-queue", "haproxy", "critical"),
        ("edge1:9469", "conntrack", "", "critical"),
        ("edge1:9469", "fds", "", "critical"),  # host file handles
        ("edge1:9469", "fds", "leaky", "critical"),  # the process's limit
        ("edge2:9469", "accept-queue", "haproxy", "critical"),
        ("edge2:9469", "conntrack", "", "critical"),
        ("edge2:9469", "fds", "", "critical"),
        ("edge2:9469", "fds", "leaky", "critical"),
    ]


def test_the_one_page_check_fails_without_the_doctor_guard(tmp_path):
    """The promtool half can fail: without `unless ... halfopen_doctor_up == 1`, conntrack
    at 96 % pages twice on a host that runs the doctor, and promtool says so."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    rules = (PROM / "halfopen-alerts.yml").read_text()
    guard = "halfopen_conntrack_entries / halfopen_conntrack_entries_limit > 0.9\n" \
            "          unless on(job, instance) halfopen_doctor_up == 1\n"
    assert rules.count(guard) == 1
    (tmp_path / "halfopen-alerts.yml").write_text(
        rules.replace(guard, "halfopen_conntrack_entries / halfopen_conntrack_entries_limit > 0.9\n"))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "one-page-test.yml").write_text((PROM / "tests" / "one-page-test.yml").read_text())
    r = subprocess.run(["promtool", "test", "rules", "one-page-test.yml"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path / "tests")
    assert r.returncode != 0
    assert "alertname: HalfopenConntrackNearFull, time: 10m" in r.stdout + r.stderr
