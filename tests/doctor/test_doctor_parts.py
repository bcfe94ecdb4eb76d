"""Parsers, status and the command line's edges."""

from __future__ import annotations

import json

import pytest
from tests.helpers import run_halfopen

from halfopen.collect.nginx_conf import parse, parse_time
from halfopen.diagnose import middlebox
from halfopen.diagnose.report import status_of
from halfopen.errors import UsageError
from halfopen.model.finding import Finding

NGINX_T = """
# configuration file /etc/nginx/nginx.conf:
events { worker_connections 768; }
http {
    keepalive_timeout 65;   # seconds
    server {
        listen 80 default_server;
        listen [::]:443 ssl so_keepalive=30s:10s:3;
        location / { keepalive_timeout 1m30s; }
    }
}
"""


def test_nginx_parse():
    conf = parse(NGINX_T)
    assert conf.keepalive_timeouts == [("http", 65.0), ("location /", 90.0)]
    assert [(x.port, x.so_keepalive) for x in conf.listens] == [(80, None), (443, "30s:10s:3")]
    assert conf.max_keepalive_timeout_s == 90.0 and conf.min_keepalive_timeout_s == 65.0
    assert parse("events {}").max_keepalive_timeout_s == 75  # nginx's default
    with pytest.raises(ValueError):
        parse_time("soon")


def test_middlebox_presets_and_numbers():
    assert middlebox.parse("aws-nlb").idle_timeout_s == 350
    assert middlebox.parse("aws-alb").kind == "proxy"
    assert middlebox.parse("azure-lb").idle_timeout_s == 240
    assert middlebox.parse("900").idle_timeout_s == 900
    for bad in ("aws", "0", "-5", "1.5"):
        with pytest.raises(UsageError, match="aws-nlb, aws-alb, gcp-lb, azure-lb"):
            middlebox.parse(bad)
    boxes = middlebox.parse_file("aws-nlb\n# comment\nfw 1800 flow\nhaproxy 30 proxy\n", "f")
    assert [(b.name, b.idle_timeout_s, b.kind) for b in boxes] == [
        ("aws-nlb", 350, "flow"), ("fw", 1800, "flow"), ("haproxy", 30, "proxy")]
    with pytest.raises(UsageError, match="f:1"):
        middlebox.parse_file("fw soon\n", "f")


def test_status():
    f = lambda sev: Finding("fd-leak", sev, "c", "t")  # noqa: E731
    assert status_of([], []) == "unknown"
    assert status_of([f("unknown")], ["close-wait-leak"]) == "ok"
    assert status_of([f("info"), f("warning")], ["x"]) == "warning"
    assert status_of([f("critical"), f("warning")], ["x"]) == "critical"


def test_bad_middlebox_is_one_line_and_exit_64():
    p = run_halfopen("doctor", "--middlebox", "cloudflare")
    assert p.returncode == 64 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "aws-nlb, aws-alb, gcp-lb, azure-lb" in lines[0]


def test_saved_snapshot_gives_the_same_report(tmp_path):
    saved = tmp_path / "snap.json"
    p1 = run_halfopen("doctor", "--json", "--window", "0", "--save-snapshot", str(saved))
    p2 = run_halfopen("doctor", "--json", "--snapshot", str(saved))
    a, b = json.loads(p1.stdout), json.loads(p2.stdout)
    assert p1.returncode == p2.returncode
    assert [f["id"] for f in a["findings"]] == [f["id"] for f in b["findings"]]
    assert a["checked"] == b["checked"] and b["schema"] == "halfopen.doctor/1"


def test_snapshot_from_a_case_and_nagios_exit(tmp_path):
    import os
    with open(os.path.join(os.path.dirname(__file__), "cases", "close-wait-leak-critical.json")) as f:
        case = json.load(f)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(case["snapshot"]))
    p = run_halfopen("doctor", "--snapshot", str(path))
    assert p.returncode == 2 and "close-wait-leak" in p.stdout and "nginx (pid 812)" in p.stdout
    p = run_halfopen("doctor", "--snapshot", str(path), "--pid", "1", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["findings"] == []
