"""End to end: each scenario builds, breaks, asks the doctor, fixes, verifies, and leaves nothing.

Each test runs `halfopen lab run SCENARIO --json` as a user would (root, real
namespaces), then checks the result and that the host is as before: no lab
namespaces, no lab processes, host sysctls unchanged, no run left in the state file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from tests.helpers import run_halfopen, start_halfopen

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

STATE = "/run/halfopen-lab/state.json"
HOST_KEYS = ("net/netfilter/nf_conntrack_max", "net/ipv4/tcp_syncookies", "net/ipv4/tcp_tw_reuse",
             "net/ipv4/ip_local_port_range", "net/ipv4/tcp_fin_timeout",
             "net/ipv4/tcp_orphan_retries", "net/ipv4/tcp_keepalive_time",
             "net/netfilter/nf_conntrack_tcp_timeout_established", "net/ipv4/ip_forward",
             "net/ipv4/tcp_max_orphans", "net/ipv4/tcp_max_tw_buckets",
             "net/ipv4/tcp_synack_retries", "net/ipv4/tcp_mem", "fs/file-max")

# scenario -> [(finding id, subject keys taken from the result's facts)]
EXPECT = {
    "leaky-server": [("close-wait-leak", {"pid": "server_pid"}), ("fd-exhaustion", {"pid": "server_pid"})],
    "client-power-loss": [("keepalive-off", {"pid": "server_pid"})],
    "middlebox-timeout": [("timeout-mismatch", {}), ("dead-peer", {"pid": "server_pid"})],
    "syn-flood": [("syn-flood", {"port": "port"})],
    "accept-queue-overflow": [("accept-queue-overflow", {"port": "port"})],
    "time-wait-storm": [("time-wait-pressure", {})],
    "conntrack-full": [("conntrack-exhaustion", {})],
    "orphans": [("orphan-pressure", {})],
}

# scenario -> what its trace (doctor --trace, run while the scenario acted) must have read
TRACED = {
    # every CLOSE_WAIT socket's FIN seen, and not one close() by the leaker
    "leaky-server": lambda f: f["trace_fins_received"] >= 40 and f["trace_closes_called"] == 0,
    # the router's two resets after idle, received by the server, and the middlebox named
    "middlebox-timeout": lambda f: f["trace_resets_received"] == 2 and f["trace_middlebox_named"],
}

# scenario -> the finding whose automatic fixes `halfopen fix --apply --netns` applies
FIXED_BY_FIX = {"syn-flood": "syn-flood", "time-wait-storm": "time-wait-pressure",
                "orphans": "orphan-pressure"}


def host_sysctls() -> dict[str, str]:
    got = {}
    for key in HOST_KEYS:
        try:
            with open(f"/proc/sys/{key}") as f:
                got[key] = f.read().strip()
        except FileNotFoundError:
            pass
    return got


def lab_namespaces(run_id: str = "") -> list[str]:
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return []
    return [n for n in names if n.startswith(f"ho-{run_id}")]


def state_runs() -> dict:
    try:
        with open(STATE) as f:
            return json.load(f)["runs"]
    except FileNotFoundError:
        return {}


def assert_nothing_left(result: dict, before: dict[str, str]) -> None:
    rid = result["run_id"]
    assert lab_namespaces(rid + "-") == [], "namespaces left behind"
    assert result["leftovers"] == []
    for key in ("server_pid", "server_pids"):
        pids = result["facts"].get(key)
        for pid in ([pids] if isinstance(pids, int) else pids or []):
            assert not os.path.exists(f"/proc/{pid}"), f"lab process {pid} still runs"
    assert host_sysctls() == before, "host sysctls changed"
    assert rid not in state_runs(), "run left in the state file"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "to-srv" not in links and "to-cli" not in links and "to-rtr" not in links


@pytest.mark.parametrize("scenario", list(EXPECT))
def test_scenario(scenario: str) -> None:
    before = host_sysctls()
    proc = run_halfopen("lab", "run", scenario, "--json", timeout=150)
    result = json.loads(proc.stdout)
    failed = [c for c in result["checks"] if c["ok"] is False]
    assert result["verdict"] == "cured", (result["error"], failed, proc.stderr[-3000:])
    assert proc.returncode == 0
    # the symptom was there, and the fix cured it: both phases have passing checks
    assert any(c["ok"] for c in result["checks"] if c["phase"] == "symptom")
    assert any(c["ok"] for c in result["checks"] if c["phase"] == "cure")
    assert result["fixed_by"]
    assert result["doctor"] == "ran"
    for rule, keys in EXPECT[scenario]:
        want = {k: result["facts"][v] for k, v in keys.items()}
        hits = [f for f in result["findings"] if f["id"] == rule
                and all(f["subject"].get(k) == v for k, v in want.items())]
        assert hits, f"doctor did not name {rule} {want}: {[f['id'] for f in result['findings']]}"
    if scenario in TRACED:
        assert TRACED[scenario](result["facts"]), result["facts"]
    if scenario in FIXED_BY_FIX:  # the doctor's own fix, applied with `halfopen fix`
        assert any(f.startswith(f"halfopen fix {FIXED_BY_FIX[scenario]}")
                   for f in result["fixed_by"]), result["fixed_by"]
    assert not os.path.exists(f"/run/halfopen-lab/run-{result['run_id']}"), "fix journal left"
    assert_nothing_left(result, before)


def test_unknown_scenario_is_a_usage_error() -> None:
    proc = run_halfopen("lab", "run", "no-such")
    assert proc.returncode == 64
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "leaky-server" in proc.stderr and "orphans" in proc.stderr


def test_list_names_every_scenario() -> None:
    proc = run_halfopen("lab", "list", "--json", check=True)
    names = [s["name"] for s in json.loads(proc.stdout)["scenarios"]]
    assert names == list(EXPECT)


def test_not_root_exits_3_and_creates_nothing(monkeypatch, capsys) -> None:
    from halfopen.cli.main import main
    before = lab_namespaces()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["lab", "run", "leaky-server"]) == 3
    err = capsys.readouterr().err
    assert "root" in err and len(err.strip().splitlines()) == 1
    assert lab_namespaces() == before


def test_ctrl_c_removes_everything() -> None:
    before = host_sysctls()
    # SIGINT as at a terminal: a suite started in the background (`make test &`) has it
    # ignored, and Python keeps an ignored SIGINT ignored
    p = start_halfopen("lab", "run", "middlebox-timeout", "--json",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(lab_namespaces()) < 3:
        time.sleep(0.2)
    time.sleep(2.0)  # the server runs, the router has its rules
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    result = json.loads(out)
    assert result["verdict"] == "interrupted", err[-2000:]
    assert_nothing_left(result, before)


def test_keep_then_clean() -> None:
    proc = run_halfopen("lab", "run", "leaky-server", "--keep", "--json", timeout=120)
    result = json.loads(proc.stdout)
    rid = result["run_id"]
    assert sorted(lab_namespaces(rid + "-")) == [f"ho-{rid}-cli", f"ho-{rid}-srv"]
    assert os.path.exists(f"/proc/{result['facts']['server_pid']}")
    clean = run_halfopen("lab", "clean")
    assert clean.returncode == 0, clean.stderr
    assert f"netns ho-{rid}-srv" in clean.stdout
    assert lab_namespaces(rid + "-") == []
    for _ in range(20):
        if not os.path.exists(f"/proc/{result['facts']['server_pid']}"):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{result['facts']['server_pid']}")
    assert rid not in state_runs()


def test_clean_restores_a_crashed_runs_host_sysctl(tmp_path) -> None:
    """A run killed with SIGKILL after lowering a host-wide sysctl: clean restores it."""
    from halfopen.lab.state import StateFile
    key = "net/netfilter/nf_conntrack_max"
    with open(f"/proc/sys/{key}") as f:
        original = f.read().strip()
    state = StateFile()
    dead = subprocess.Popen(["true"])
    dead.wait()
    with state.edit() as data:
        data["runs"]["dead0"] = {"owner": dead.pid, "owner_start": 1, "scenario": "conntrack-full",
                                 "netns": ["ho-dead0-rtr"], "pids": [],
                                 "host_sysctls": {key.replace("/", "."): original}}
    subprocess.run(["ip", "netns", "add", "ho-dead0-rtr"], check=True)
    try:
        with open(f"/proc/sys/{key}", "w") as f:
            f.write(str(int(original) - 1))
        clean = run_halfopen("lab", "clean")
        assert clean.returncode == 0, clean.stderr
        with open(f"/proc/sys/{key}") as f:
            assert f.read().strip() == original
        assert "ho-dead0-rtr" not in lab_namespaces()
        assert "dead0" not in state_runs()
    finally:
        with open(f"/proc/sys/{key}", "w") as f:
            f.write(original)
        subprocess.run(["ip", "netns", "del", "ho-dead0-rtr"], capture_output=True)


def test_clean_rolls_back_a_crashed_runs_host_fix() -> None:
    """A crashed run whose `halfopen fix` journal holds a host change: clean rolls it back."""
    from halfopen.lab.state import StateFile
    key = "net/ipv4/tcp_max_orphans"
    with open(f"/proc/sys/{key}") as f:
        original = f.read().strip()
    changed = str(int(original) + 1)
    state = StateFile()
    dead = subprocess.Popen(["true"])
    dead.wait()
    with state.edit() as data:
        data["runs"]["dead1"] = {"owner": dead.pid, "owner_start": 1, "scenario": "orphans",
                                 "netns": [], "pids": [], "host_sysctls": {}}
    os.makedirs("/run/halfopen-lab/run-dead1", exist_ok=True)
    with open("/run/halfopen-lab/run-dead1/journal.jsonl", "w") as f:
        f.write(json.dumps({"id": "t-dead1:1", "time": "2026-01-01T00:00:00+00:00",
                            "kind": "sysctl", "target": key.replace("/", "."), "netns": "host",
                            "old": original, "new": changed, "finding": "orphan-pressure"}) + "\n")
    try:
        with open(f"/proc/sys/{key}", "w") as f:
            f.write(changed)
        clean = run_halfopen("lab", "clean")
        assert clean.returncode == 0, clean.stderr
        assert "fix --rollback" in clean.stdout + clean.stderr or "run directory" in clean.stdout
        with open(f"/proc/sys/{key}") as f:
            assert f.read().strip() == original
        assert "dead1" not in state_runs()
        assert not os.path.exists("/run/halfopen-lab/run-dead1")
    finally:
        with open(f"/proc/sys/{key}", "w") as f:
            f.write(original)
