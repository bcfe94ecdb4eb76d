"""`halfopen fix` on sysctls inside a test namespace: plan, apply, already set, persist,
rollback, bad input, and a failure midway. The host's values never move."""

from __future__ import annotations

import json
import os

from tests.helpers import sh

from halfopen.model.finding import Finding, Fix
from halfopen.model.subject import Subject

KEYS = {"net.ipv4.tcp_keepalive_time": "7200", "net.ipv4.tcp_keepalive_intvl": "75",
        "net.core.somaxconn": "4096", "net.ipv4.ip_local_port_range": "32768 60999"}


def sysctl_fix(key: str, value: str, netns: str) -> Fix:
    return Fix("sysctl", f"ip netns exec {netns} sysctl -w {key}={value}", True,
               {"key": key, "value": value, "netns": netns})


def findings_file(tmp_path, netns: str, fixes: list[Fix], rule: str = "keepalive-off",
                  extra: list[Finding] = ()) -> str:
    finding = Finding(rule, "warning", "client vanished", f"{rule} in {netns}",
                      Subject(netns), [], fixes, "why")
    path = tmp_path / "doctor.json"
    path.write_text(json.dumps({"schema": "halfopen.doctor/1",
                                "findings": [finding.to_dict()] + [f.to_dict() for f in extra]}))
    return str(path)


def ns_value(netns: str, key: str) -> str:
    return " ".join(sh("sysctl", "-n", key, netns=netns).stdout.split())


def host_value(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return " ".join(f.read().split())


def journal_lines(state_dir) -> list[dict]:
    path = state_dir / "journal.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [e for e in lines if e["kind"] != "done"]  # the write-ahead marks


def test_apply_twice_persist_rollback(netns, state_dir, run, tmp_path):
    host_before = {k: host_value(k) for k in KEYS}
    assert {k: ns_value(netns, k) for k in KEYS} == KEYS  # a fresh namespace's defaults
    wanted = {"net.ipv4.tcp_keepalive_time": "300", "net.ipv4.tcp_keepalive_intvl": "30",
              "net.core.somaxconn": "8192", "net.ipv4.ip_local_port_range": "20000  61000"}
    path = findings_file(tmp_path, netns, [sysctl_fix(k, v, netns) for k, v in wanted.items()])

    code, out, _err = run("fix", "--findings", path)  # the plan
    assert code == 0 and "7200 -> 300" in out and "32768 60999 -> 20000 61000" in out
    assert "nothing was changed" in out and not journal_lines(state_dir)
    assert ns_value(netns, "net.ipv4.tcp_keepalive_time") == "7200"

    code, out, err = run("fix", "--findings", path, "--apply", "--json")
    assert code == 0, err
    assert [r["outcome"] for r in json.loads(out)["results"]] == ["set"] * 4
    for key, value in wanted.items():
        assert ns_value(netns, key) == " ".join(value.split())
    assert {k: host_value(k) for k in KEYS} == host_before  # per namespace: host untouched
    lines = journal_lines(state_dir)
    assert [(e["kind"], e["target"], e["old"]) for e in lines] == \
        [("sysctl", k, v) for k, v in KEYS.items()]
    assert all(e["netns"] == netns and e["time"] for e in lines)

    code, out, _err = run("fix", "--findings", path, "--apply")  # twice: nothing changes
    assert code == 0 and out.count("already set") == 4
    assert len(journal_lines(state_dir)) == 4

    code, out, err = run("fix", "--rollback")
    assert code == 0, err
    assert out.count("restored") == 4
    assert {k: ns_value(netns, k) for k in KEYS} == KEYS
    assert {k: host_value(k) for k in KEYS} == host_before
    code, out, _err = run("fix", "--rollback")
    assert code == 0 and "nothing to roll back" in out


def test_persist_writes_file_atomically_with_backup(netns, state_dir, run, tmp_path):
    conf = state_dir / "sysctl.d" / "60-halfopen.conf"
    conf.parent.mkdir()
    conf.write_text("net.core.somaxconn = 1024\n")
    # host sysctls already at their values: nothing changes on the host, the file is written
    key = "net.ipv4.tcp_fin_timeout"
    fixes = [Fix("sysctl", "", True, {"key": key, "value": host_value(key), "netns": "host"}),
             sysctl_fix("net.ipv4.tcp_keepalive_time", "600", netns)]
    path = findings_file(tmp_path, netns, fixes)
    code, out, err = run("fix", "--findings", path, "--apply", "--persist")
    assert code == 0, err
    text = conf.read_text()
    assert f"{key} = {host_value(key)}" in text and "net.core.somaxconn = 1024" in text
    assert "tcp_keepalive_time" not in text  # a namespace's value does not belong at boot
    assert (state_dir / "sysctl.d" / "60-halfopen.conf.bak").read_text() == \
        "net.core.somaxconn = 1024\n"
    assert not [n for n in os.listdir(conf.parent) if ".tmp." in n]
    code, _out, _err = run("fix", "--rollback")
    assert code == 0
    assert conf.read_text() == "net.core.somaxconn = 1024\n"
    assert ns_value(netns, "net.ipv4.tcp_keepalive_time") == "7200"


def test_bad_input_changes_nothing(netns, state_dir, run, tmp_path):
    good = sysctl_fix("net.ipv4.tcp_keepalive_time", "300", netns)
    for fixes, words in (([good, sysctl_fix("net.ipv4.tcp_keepalive_probes", "999", netns)],
                          "bad value '999'"),
                         ([good, sysctl_fix("net.ipv4.ip_local_port_range", "5000 10", netns)],
                          "low <= high"),
                         ([good, sysctl_fix("kernel.panic", "1", netns)], "not one halfopen"),
                         ([good, Fix("prlimit", "", True, {"soft": 10})], "names no pid")):
        path = findings_file(tmp_path, netns, fixes)
        code, out, err = run("fix", "--findings", path, "--apply")
        assert code == 64 and words in err and len(err.strip().splitlines()) == 1, err
    path = findings_file(tmp_path, netns, [good])
    code, _out, err = run("fix", "no-such-rule", "--findings", path, "--apply")
    assert code == 64 and "unknown finding id 'no-such-rule'" in err
    assert ns_value(netns, "net.ipv4.tcp_keepalive_time") == "7200"
    assert not journal_lines(state_dir)
    code, out, _err = run("fix", "syn-flood", "--findings", path, "--apply")
    assert code == 0 and "no current finding syn-flood" in out
    assert ns_value(netns, "net.ipv4.tcp_keepalive_time") == "7200"


def test_failure_midway_journal_and_rollback(netns, state_dir, run, tmp_path):
    # the kernel refuses a local port range below ip_unprivileged_port_start (1024)
    fixes = [sysctl_fix("net.ipv4.tcp_keepalive_time", "300", netns),
             sysctl_fix("net.ipv4.ip_local_port_range", "1000 60000", netns),
             sysctl_fix("net.core.somaxconn", "8192", netns)]
    path = findings_file(tmp_path, netns, fixes)
    code, _out, err = run("fix", "--findings", path, "--apply")
    assert code == 2
    assert "ip_local_port_range" in err and "EINVAL" in err and "--rollback" in err
    # write-ahead: the refused change's intent is on disk, with no "done" line after it
    assert [e["target"] for e in journal_lines(state_dir)] == \
        ["net.ipv4.tcp_keepalive_time", "net.ipv4.ip_local_port_range"]
    assert ns_value(netns, "net.ipv4.tcp_keepalive_time") == "300"
    assert ns_value(netns, "net.core.somaxconn") == "4096"  # never reached
    code, out, _err = run("fix", "--rollback")
    assert code == 0 and "restored" in out and "never made" in out
    assert ns_value(netns, "net.ipv4.tcp_keepalive_time") == "7200"


def test_host_wide_key_from_a_namespace_is_manual(netns, state_dir, run, tmp_path):
    before = host_value("net.ipv4.tcp_max_orphans")
    fixes = [sysctl_fix("net.ipv4.tcp_max_orphans", "1234", netns),
             Fix("config", "keepalive_timeout 30s;", False,
                 {"file": "/etc/nginx/nginx.conf", "snippet": "keepalive_timeout 30s;"})]
    path = findings_file(tmp_path, netns, fixes)
    code, out, _err = run("fix", "--findings", path, "--apply")
    assert code == 0
    assert "whole host" in out and "keepalive_timeout 30s;" in out
    assert host_value("net.ipv4.tcp_max_orphans") == before
    assert not journal_lines(state_dir)


def test_rollback_leaves_a_value_changed_since(netns, state_dir, run, tmp_path):
    path = findings_file(tmp_path, netns,
                         [sysctl_fix("net.ipv4.tcp_keepalive_time", "300", netns)])
    assert run("fix", "--findings", path, "--apply")[0] == 0
    sh("sysctl", "-w", "net.ipv4.tcp_keepalive_time=400", netns=netns)
    code, out, _err = run("fix", "--rollback")
    assert code == 1 and "left alone" in out and "now 400" in out
    assert ns_value(netns, "net.ipv4.tcp_keepalive_time") == "400"
