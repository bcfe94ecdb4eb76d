"""The exporter scraped by a real Prometheus while a process leaks CLOSE_WAIT."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from halfopen.watch import exporter

from .conftest import ROOT, free_port, run_halfopen, stop, wait_for
from .samples import finding, make


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def start_exporter(port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "halfopen.cli.main", "exporter", "--listen",
                             f"127.0.0.1:{port}", *extra], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc


def _get_or_none(url: str) -> str | None:
    try:
        return http_get(url)
    except OSError:
        return None


@pytest.fixture
def exporter_proc():
    port = free_port()
    proc = start_exporter(port, "--no-doctor", "--top", "5")
    try:
        wait_for("exporter to serve", lambda: _get_or_none(f"http://127.0.0.1:{port}/metrics"))
        yield port, proc
    finally:
        stop(proc)


def test_prometheus_sees_per_process_close_wait_rise(start_leaker, exporter_proc, tmp_path):
    leak = start_leaker(initial=5, rate=10, max_=500)
    port, _ = exporter_proc
    text = http_get(f"http://127.0.0.1:{port}/metrics")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr

    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""global:
  scrape_interval: 4s
  scrape_timeout: 4s
  evaluation_interval: 4s
scrape_configs:
  - job_name: halfopen
    static_configs:
      - targets: ['127.0.0.1:{port}']
""")
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        wait_for("prometheus ready", lambda: _get_or_none(f"http://127.0.0.1:{prom_port}/-/ready"),
                 timeout=40, step=0.3)
        query = f'halfopen_process_sockets{{pid="{leak.pid}",state="close_wait"}}'

        def samples():
            url = f"{api}/query?" + urllib.parse.urlencode({"query": f"{query}[60s]"})
            res = json.loads(http_get(url))["data"]["result"]
            return [float(v) for _t, v in res[0]["values"]] if res else []

        values = wait_for("a rising per-process CLOSE_WAIT series",
                          lambda: (lambda v: v if len(v) >= 3 and v[-1] > v[0] else None)(samples()),
                          timeout=60, step=0.5)
        assert all(b >= a for a, b in zip(values, values[1:])), values  # a leak only grows
        res = json.loads(http_get(f"{api}/query?" + urllib.parse.urlencode(
            {"query": f'halfopen_process_oldest_close_wait_seconds{{pid="{leak.pid}"}}'})))
        assert float(res["data"]["result"][0]["value"][1]) > 0
        up = json.loads(http_get(f"{api}/query?query=up"))["data"]["result"]
        assert up and up[0]["value"][1] == "1"
    finally:
        stop(prom)


def test_port_in_use_is_one_line_exit_64(exporter_proc):
    port, _ = exporter_proc
    r = run_halfopen("exporter", "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 64
    assert r.stderr.strip() == f"halfopen: 127.0.0.1:{port} is in use: choose another --listen"


def test_families_cap_processes_and_export_findings():
    from prometheus_client import CollectorRegistry, generate_latest

    s = make(1000.0, close_wait=50, findings=[finding(), finding(severity="warning")])
    for pid in range(100, 130):
        s.processes[pid] = exporter.ProcSample(pid, f"p{pid}", 5, 1024, {"established": 1})

    class Fixed:
        def collect(self):
            return exporter.families(s, top=3)

    reg = CollectorRegistry()
    reg.register(Fixed())
    text = generate_latest(reg).decode()
    per_proc = [line for line in text.splitlines() if line.startswith("halfopen_process_sockets{")]
    pids = {line.split('pid="')[1].split('"')[0] for line in per_proc}
    assert pids == {"4242", "7", "100", "other"}  # ties: lowest pid first
    assert 'halfopen_process_sockets{comm="other",pid="other",state="established"} 29.0' in text
    assert "halfopen_processes_capped 29.0" in text
    assert text.count("halfopen_finding{") == 2
    assert 'id="close-wait-leak"' in text and 'severity="critical"' in text
    assert "halfopen_tcpext_listen_overflows_total 0.0" in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_live_collector_runs_the_doctor():
    from prometheus_client import CollectorRegistry, generate_latest

    from halfopen.watch.exporter import HalfopenCollector
    from halfopen.watch.sampler import Sampler

    sampler = Sampler()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(HalfopenCollector(sampler))
    text = generate_latest(reg).decode()
    up = 1.0 if sampler.doctor.available else 0.0
    assert f"halfopen_doctor_up {up}" in text, sampler.doctor.note
    assert "halfopen_scrape_duration_seconds " in text
