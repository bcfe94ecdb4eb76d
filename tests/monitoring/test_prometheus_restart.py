"""A real Prometheus scrapes the exporter while a leaking service is killed and started
again: its per-process series keeps its labels (comm and unit, no pid) across the
restart, and only halfopen_process_info says the pid changed."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from tests.helpers import start_halfopen, wait_for

from .conftest import free_port, start_process, stop, stop_group

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="prometheus not installed (scripts/install-deps --test)")


def get(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def get_or_none(url: str) -> str | None:
    try:
        return get(url)
    except OSError:
        return None


class Prometheus:
    def __init__(self, api: str) -> None:
        self.api = api

    def query(self, expr: str) -> list[dict]:
        url = f"{self.api}/query?" + urllib.parse.urlencode({"query": expr})
        return json.loads(get(url))["data"]["result"]


def test_a_restart_keeps_the_per_process_series(service, tmp_path):
    first, _ = service.start_leaker(initial=20)
    port, prom_port = free_port(), free_port()
    exporter = start_halfopen("exporter", "--listen", f"127.0.0.1:{port}", "--no-doctor",
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    p = Prometheus(f"http://127.0.0.1:{prom_port}/api/v1")
    unit = service.unit
    sockets = f'halfopen_process_sockets{{unit="{unit}",state="close_wait"}}'
    prom = None
    try:
        # A scrape reads every process's fds: seconds on a host where a benchmark holds 100k
        # of them. Time one scrape and space Prometheus's scrapes to fit (bounded waits).
        wait_for("exporter to serve", lambda: get_or_none(f"http://127.0.0.1:{port}/metrics"),
                 timeout=60, step=0.5)
        started = time.monotonic()
        get(f"http://127.0.0.1:{port}/metrics")
        interval = max(2, math.ceil(2.5 * (time.monotonic() - started)))
        patience = min(300, 15 * interval)
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(f"global:\n  scrape_interval: {interval}s\n  scrape_timeout: {interval}s\n"
                       "scrape_configs:\n  - job_name: halfopen\n    static_configs:\n"
                       f"      - targets: ['127.0.0.1:{port}']\n")
        prom = start_process(["prometheus", f"--config.file={cfg}",
                              f"--storage.tsdb.path={tmp_path / 'data'}",
                              f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prom.log")
        wait_for("prometheus ready", lambda: get_or_none(f"http://127.0.0.1:{prom_port}/-/ready"),
                 timeout=60, step=0.5)

        def pids_seen() -> set[str]:
            return {r["metric"]["pid"] for r in p.query(f'halfopen_process_info{{unit="{unit}"}}')}

        wait_for("the first leaker scraped", lambda: str(first.pid) in pids_seen()
                 and p.query(sockets), timeout=patience, step=1)
        (before,) = p.query(sockets)
        killed_at = time.time()
        first.kill()
        first.wait(10)
        second, _ = service.start_leaker(initial=30)
        assert second.pid != first.pid
        wait_for("the restarted leaker scraped", lambda: pids_seen() == {str(second.pid)}
                 and p.query(f"{sockets} == 30"), timeout=patience, step=1)

        # one series over the whole window: the same labels before and after the restart
        series = p.query(f"{sockets}[10m]")
        assert len(series) == 1, series
        (after,) = p.query(sockets)
        assert series[0]["metric"] == before["metric"] == after["metric"]
        assert before["metric"]["comm"] == "leaker" and "pid" not in before["metric"]
        values = [(float(t), float(v)) for t, v in series[0]["values"]]
        assert any(t < killed_at and v == 20 for t, v in values), values
        assert any(t > killed_at and v == 30 for t, v in values), values
        # the pid lives in the info series: one per incarnation over the window
        info = p.query(f'halfopen_process_info{{unit="{unit}"}}[10m]')
        assert {r["metric"]["pid"] for r in info} == {str(first.pid), str(second.pid)}
        joined = p.query(f"{sockets} * on(instance, comm, unit) group_left(pid) "
                         f'halfopen_process_info{{unit="{unit}"}}')
        assert [(r["metric"]["pid"], r["value"][1]) for r in joined] == [(str(second.pid), "30")]
    finally:
        if prom is not None:
            stop_group(prom)
        stop(exporter)
