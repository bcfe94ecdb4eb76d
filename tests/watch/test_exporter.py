"""The exporter's families: identities that survive restarts, findings valued by severity,
collectors, the standard process_* names. (A real Prometheus through a restart:
tests/monitoring.)"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from tests.helpers import start_halfopen, wait_for

from halfopen.model.finding import Finding
from halfopen.watch.process_labels import Identity
from halfopen.watch.sample import CollectorRun, Listener
from halfopen.watch.serving import exporter

from .conftest import ROOT, free_port, run_halfopen, stop
from .samples import finding, make


def start_exporter(port: int, *extra: str) -> subprocess.Popen:
    proc = start_halfopen("exporter", "--listen", f"127.0.0.1:{port}", *extra, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def exporter_proc():
    port = free_port()
    proc = start_exporter(port, "--no-doctor", "--top", "5")
    try:
        # listening is enough here; a scrape (every process's fds) takes seconds on a loaded host
        wait_for("exporter to listen", lambda: _listening(port), timeout=60, step=0.2)
        yield port, proc
    finally:
        stop(proc)


def test_port_in_use_is_one_line_exit_64(exporter_proc):
    port, _ = exporter_proc
    r = run_halfopen("exporter", "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 64
    assert r.stderr.strip() == f"halfopen: 127.0.0.1:{port} is in use: choose another --listen"


def exposition(s, top: int = 20) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    class Fixed:
        def collect(self):
            return exporter.families(s, top=top)

    reg = CollectorRegistry()
    reg.register(Fixed())
    text = generate_latest(reg).decode()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    return text


def lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_families_cap_identities_and_export_findings():
    s = make(1000.0, close_wait=50, findings=[finding(), finding(severity="warning")])
    for pid in range(100, 130):
        s.processes[pid] = exporter.ProcSample(pid, f"p{pid}", 5, 1024, {"established": 1})
    text = exposition(s, top=3)
    comms = {line.split('comm="')[1].split('"')[0] for line in lines(text, "halfopen_process_sockets")}
    assert comms == {"leaky", "sshd", "p100", "other"}  # ties: by labels
    assert ('halfopen_process_sockets{comm="other",container_name="",pod_name="",pod_namespace="",'
            'state="established",unit=""} 29.0') in text
    assert "halfopen_processes_capped 29.0" in text
    assert not any('pid="' in line for line in lines(text, "halfopen_process_sockets"))
    # two findings on one subject, warning and critical: one series, valued critical
    assert lines(text, "halfopen_finding") == [
        'halfopen_finding{cause="application does not close",comm="leaky",container_name="",'
        'id="close-wait-leak",netns="host",pod_name="",pod_namespace="",port="8080",unit=""} 2.0']
    assert "halfopen_tcpext_listen_overflows_total 0.0" in text


def test_a_process_named_other_is_folded_not_duplicated():
    s = make(1.0, close_wait=3, comm="other")  # a real comm "other", no unit
    text = exposition(s, top=1)  # promtool check metrics rejects duplicate series
    assert sum('comm="other"' in line for line in lines(text, "halfopen_process_sockets")) == 2
    assert "halfopen_processes_capped 1.0" in text  # sshd keeps its own series


def test_a_restart_keeps_the_series_and_moves_the_pid_to_info():
    """The same service before and after a restart: new pid, same per-process and
    finding series; only halfopen_process_info names the other pid."""
    def sample(pid: int, severity: str):
        s = make(1.0, close_wait=40, pid=pid, findings=[finding(pid, severity)])
        s.identities = {pid: Identity("leaky", "leaky.service"), 7: Identity("sshd", "ssh.service")}
        return exposition(s)

    before, after = sample(4242, "warning"), sample(5151, "critical")
    for name in ("halfopen_process_sockets", "halfopen_process_open_fds",
                 "halfopen_process_max_fds", "halfopen_listener_accept_queue"):
        assert lines(before, name) == lines(after, name), name
    series = [line.rsplit(" ", 1) for text in (before, after) for line in lines(text, "halfopen_finding")]
    assert len(series) == 2 and series[0][0] == series[1][0]  # one series ...
    assert 'unit="leaky.service"' in series[0][0] and 'pid=' not in series[0][0]
    assert [v for _k, v in series] == ["1.0", "2.0"]  # ... whose value escalates
    assert [line for line in lines(before, "halfopen_process_info") if "leaky" in line] == [
        'halfopen_process_info{comm="leaky",container_name="",pid="4242",pod_name="",'
        'pod_namespace="",unit="leaky.service"} 1.0']
    assert 'pid="5151"' in "".join(lines(after, "halfopen_process_info"))


def test_workers_of_one_service_share_its_series():
    s = make(1.0, close_wait=0)
    s.processes = {pid: exporter.ProcSample(pid, "nginx", fds, 1024, {"close_wait": cw, "listen": 1})
                   for pid, fds, cw in ((10, 100, 3), (11, 900, 4), (12, 50, 5))}
    s.identities = {pid: Identity("nginx", "nginx.service") for pid in s.processes}
    s.listeners = [Listener("host", "0.0.0.0", 80, q, 511, 0, pid, "nginx")
                   for pid, q in ((10, 2), (11, 3))]  # SO_REUSEPORT: one listener each
    text = exposition(s)
    ident = 'comm="nginx",container_name="",pod_name="",pod_namespace="",unit="nginx.service"'
    assert ('halfopen_process_sockets{comm="nginx",container_name="",pod_name="",pod_namespace="",'
            'state="close_wait",unit="nginx.service"} 12.0') in text
    assert f"halfopen_process_pids{{{ident}}} 3.0" in text
    assert f"halfopen_process_open_fds{{{ident}}} 900.0" in text  # the one nearest its limit
    assert f"halfopen_process_max_fds{{{ident}}} 1024.0" in text
    assert [line.split('pid="')[1][:2] for line in lines(text, "halfopen_process_info")] == [
        "12", "11", "10"]  # most CLOSE_WAIT first
    assert lines(text, "halfopen_listener_accept_queue") == [
        'halfopen_listener_accept_queue{address="0.0.0.0",comm="nginx",container_name="",'
        'netns="host",pod_name="",pod_namespace="",port="80",unit="nginx.service"} 5.0']


def test_severity_is_the_value_and_unknown_rules_are_their_own_series():
    found = [finding(severity="info"), Finding("kernel-log", "unknown", "kernel", "not read")]
    found[0].id = "fd-leak"
    text = exposition(make(1.0, findings=found))
    assert [line.rsplit(" ", 1)[1] for line in lines(text, "halfopen_finding")] == ["0.0"]
    assert lines(text, "halfopen_rule_unknown") == ['halfopen_rule_unknown{id="kernel-log"} 1.0']


def test_collectors_and_build_info():
    from halfopen import __version__

    s = make(1.0)
    s.collectors = {"sockets": CollectorRun(True, 0.25), "kernel-log": CollectorRun(False),
                    "doctor": CollectorRun(True, 0.5)}
    text = exposition(s)
    assert lines(text, "halfopen_collector_success") == [
        'halfopen_collector_success{collector="doctor"} 1.0',
        'halfopen_collector_success{collector="kernel-log"} 0.0',
        'halfopen_collector_success{collector="sockets"} 1.0']
    assert lines(text, "halfopen_collector_duration_seconds") == [
        'halfopen_collector_duration_seconds{collector="doctor"} 0.5',
        'halfopen_collector_duration_seconds{collector="sockets"} 0.25']
    (info,) = lines(text, "halfopen_build_info")
    assert f'version="{__version__}"' in info and info.endswith(" 1.0")


def test_unit_from_a_real_cgroup(tmp_path):
    """A process moved into a cgroup named like a systemd service gets that unit."""
    import os
    import uuid

    from halfopen.collect.unit import read_unit

    root = "/sys/fs/cgroup/unified"
    if not os.path.exists(f"{root}/cgroup.procs"):
        pytest.skip("no writable cgroup2 hierarchy at /sys/fs/cgroup/unified")
    slice_dir = f"{root}/hoM-{uuid.uuid4().hex[:8]}.slice"
    unit = f"hoM-{uuid.uuid4().hex[:8]}.service"
    os.makedirs(f"{slice_dir}/{unit}/worker")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        assert read_unit(proc.pid) == ""
        with open(f"{slice_dir}/{unit}/worker/cgroup.procs", "w") as f:
            f.write(str(proc.pid))
        assert read_unit(proc.pid) == unit  # the innermost .service, not the sub-cgroup
    finally:
        proc.kill()
        proc.wait()
        os.rmdir(f"{slice_dir}/{unit}/worker")
        os.rmdir(f"{slice_dir}/{unit}")
        os.rmdir(slice_dir)
    assert read_unit(proc.pid) == ""  # gone: no unit, no error


def test_live_collector_runs_the_doctor():
    from prometheus_client import generate_latest

    from halfopen.watch.sampler import Sampler

    sampler = Sampler()
    reg = exporter.registry(sampler)
    text = generate_latest(reg).decode()
    up = 1.0 if sampler.doctor.available else 0.0
    assert f"halfopen_doctor_up {up}" in text, sampler.doctor.note
    assert "halfopen_scrape_duration_seconds " in text
    # the standard process_* names, not renamed
    assert "\nprocess_cpu_seconds_total " in text and "\nprocess_open_fds " in text
    assert 'halfopen_collector_success{collector="sockets"} 1.0' in text
