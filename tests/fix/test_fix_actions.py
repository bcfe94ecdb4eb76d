"""`halfopen fix` on processes: prlimit on a child, keepalive and kill from findings."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from halfopen.fix import failures, rlimit
from halfopen.kernel import current_identity
from halfopen.model.finding import Finding, Fix
from halfopen.model.subject import Subject


def limits_line(pid: int) -> list[str]:
    with open(f"/proc/{pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max open files"))
    return line.split()[3:5]


@pytest.fixture
def child():
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            preexec_fn=limit)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def write_findings(tmp_path, fixes: list[Fix], rule: str, subject: dict) -> str:
    """A findings file as the doctor writes it: a live subject pid has its identity
    (start_time, comm), without which fix refuses to act on the pid."""
    now = current_identity.process(subject["pid"]) if "pid" in subject else None
    if now is not None:
        subject = {"start_time": now.start_time, "comm": now.comm, **subject}
    finding = Finding(rule, "critical", "cause", f"{rule} title", Subject.from_dict(subject), [], fixes,
                      "why")
    path = tmp_path / "doctor.json"
    path.write_text(json.dumps({"findings": [finding.to_dict()]}))
    return str(path)


def test_prlimit_soft_up_to_hard_and_rollback(child, state_dir, run, tmp_path):
    fix = Fix("prlimit", f"prlimit --pid {child.pid} --nofile=2048", True,
              {"pid": child.pid, "resource": "nofile", "soft": 2048})
    path = write_findings(tmp_path, [fix], "fd-exhaustion", {"pid": child.pid})
    code, out, _err = run("fix", "--findings", path)
    assert code == 0 and "soft 1024, hard 4096 -> soft 2048, hard 4096" in out
    assert limits_line(child.pid) == ["1024", "4096"]
    code, out, err = run("fix", "--findings", path, "--apply")
    assert code == 0, err
    assert limits_line(child.pid) == ["2048", "4096"]
    assert run("fix", "--findings", path, "--apply")[1].count("already set") == 1
    code, out, _err = run("fix", "--rollback")
    assert code == 0 and "restored" in out
    assert limits_line(child.pid) == ["1024", "4096"]


def test_prlimit_hard_raise_needs_cap_sys_resource(child, state_dir, run, tmp_path):
    assert not rlimit.can_raise_hard()  # this machine: no CAP_SYS_RESOURCE
    fix = Fix("prlimit", "", True, {"pid": child.pid, "resource": "nofile", "soft": 65536})
    path = write_findings(tmp_path, [fix], "fd-exhaustion", {"pid": child.pid})
    code, out, err = run("fix", "--findings", path, "--apply")
    assert code == 0, err
    assert limits_line(child.pid) == ["4096", "4096"]  # soft raised up to hard
    assert "needs CAP_SYS_RESOURCE" in out
    assert "LimitNOFILE=65536" in out and "soft nofile 65536" in out
    # asked directly, the kernel refuses, and says so in one line
    with pytest.raises(failures.AccessDenied, match="CAP_SYS_RESOURCE"):
        rlimit.write(child.pid, rlimit.Limits(8192, 8192))
    assert limits_line(child.pid) == ["4096", "4096"]


def test_keepalive_and_kill_from_findings(netns, start_peer, state_dir, run, tmp_path):
    peer = start_peer(2)
    filt = f"sport = :{peer.port} exclude listening"
    fix = Fix("keepalive", "", True, {"pid": peer.pid, "idle": 20, "interval": 4,
                                      "count": 3, "filter": filt})
    path = write_findings(tmp_path, [fix], "keepalive-off", {"pid": peer.pid, "netns": netns})
    code, out, _err = run("fix", "--findings", path)
    assert code == 0 and "2 of 2 sockets without it" in out
    code, out, err = run("fix", "--findings", path, "--apply")
    assert code == 0 and "2 sockets now keepalive 20s/4s x3" in out, err
    kinds = [json.loads(line)["kind"] for line in (state_dir / "journal.jsonl").read_text().splitlines()]
    kinds = [k for k in kinds if k != "done"]  # the write-ahead marks
    assert kinds == ["keepalive", "keepalive"]
    code, out, _err = run("fix", "--rollback")
    assert code == 0 and out.count("restored") == 2
    code, out, _err = run("keepalive", "--pid", str(peer.pid), *filt.split())
    assert out.count("would set") == 2  # keepalive is off again

    kill = Fix("kill", "", True, {"filter": f"state established sport = :{peer.port}"})
    path = write_findings(tmp_path, [kill], "close-wait-leak", {"pid": peer.pid, "netns": netns})
    code, out, err = run("fix", "--findings", path, "--apply")
    assert code == 0 and "2 sockets destroyed" in out, err
    assert peer.ask("send")["errnos"] == [103, 103]  # ECONNABORTED
    code, out, _err = run("fix", "--rollback")
    assert code == 0 and out.count("cannot undo") == 1  # one journal line per kill step


def test_missing_pid_is_a_skipped_step(state_dir, run, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=10)
    fix = Fix("keepalive", f"halfopen keepalive --pid {gone.pid} --yes", True, {"pid": gone.pid})
    path = write_findings(tmp_path, [fix], "keepalive-off", {"pid": gone.pid, "start_time": 1})
    code, out, err = run("fix", "--findings", path, "--apply", "--json")
    assert code == 0 and not err
    (result,) = json.loads(out)["results"]
    assert result["outcome"] == "skipped" and f"pid {gone.pid} has exited" in result["detail"]
    assert not (state_dir / "journal.jsonl").exists() or \
        not (state_dir / "journal.jsonl").read_text()


def test_fix_with_netns_never_changes_the_host(netns, state_dir, run, tmp_path):
    """A finding about namespace X whose cure is host-wide stays a manual step."""
    key = "net.ipv4.tcp_max_orphans"  # one value for the whole host
    path_on_host = "/proc/sys/net/ipv4/tcp_max_orphans"
    before = Path(path_on_host).read_text().strip()
    fix = Fix("sysctl", f"sysctl -w {key}={int(before) * 2}", True,
              {"key": key, "value": str(int(before) * 2), "netns": "host"})
    path = write_findings(tmp_path, [fix], "orphan-pressure", {"netns": netns})
    code, out, err = run("fix", "--findings", path, "--netns", netns, "--apply")
    assert code == 0, err
    assert "outside the namespaces chosen" in out
    assert Path(path_on_host).read_text().strip() == before
    # without --netns the same finding is the user's to apply to the host: planned, not applied
    code, out, err = run("fix", "--findings", path)
    assert code == 0, err
    assert "outside the namespaces chosen" not in out
    assert f"{before} -> {int(before) * 2}" in out and "1 change(s)" in out
