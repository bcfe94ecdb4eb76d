"""`halfopen fix` driven by the live doctor, one test per kind of automatic fix.

The issue's "done when": every automatic fix in the doctor's findings can be
planned, applied, verified by a second doctor run, and rolled back. Each test
breaks something for real inside a test namespace (198.18.0.1 server,
198.18.0.2 client on lo, no route out), lets `halfopen fix --netns NS` run
the doctor and plan, applies, runs the doctor again, and rolls back:

    kill       close-wait-leak from a server that never closes
    prlimit    close-wait-leak's "buys time" soft raise, and fd-exhaustion
    keepalive  keepalive-off: idle connections without SO_KEEPALIVE
    sysctl     kernel-tuning (risky values set in the namespace) and
               timeout-mismatch (conntrack forgets before keepalive probes)

The journal and sysctl.d file live in a temporary directory (`state_dir`);
every process is killed and the namespace removed even when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.doctor.doctor_support import CLIENT, SERVER
from tests.doctor.doctor_support import Lab as NamespaceLab
from tests.helpers import sh

from halfopen.diagnose.keepalive_target import PROBING_SYSCTLS
from halfopen.diagnose.kernel import RISKY
from halfopen.fix.sysctl import KNOBS

pytestmark = [pytest.mark.netns, pytest.mark.timeout(60),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

# One process, both ends of N connections from CLIENT to SERVER (not loopback
# addresses, so the doctor does not excuse them as local peers).
#   leak N   the clients send a byte and close: the server ends sit in CLOSE_WAIT
#   idle N   the connections stay open and idle, no SO_KEEPALIVE
#   fds N    a listener (the doctor looks at socket owners) and N extra open files
#   leak-on N as leak, then it goes on leaking one more every 5 ms (bounded)
# Prints {"pid", "port"} once ready, then sleeps until killed.
PROC = r"""
import json, os, socket, sys, time
mode, count = sys.argv[1], int(sys.argv[2])
kept, port = [], 0
if mode in ("leak", "idle"):
    lst = socket.socket()
    lst.bind((sys.argv[3], 0))
    lst.listen(count)
    port = lst.getsockname()[1]
    for _ in range(count):
        c = socket.socket()
        c.bind((sys.argv[4], 0))
        c.settimeout(5)
        c.connect((sys.argv[3], port))
        s, _a = lst.accept()
        kept.append(s)
        if mode == "leak":
            c.sendall(b"x")
            c.close()
        else:
            kept.append(c)
    lst.close()
elif mode == "leak-on":  # leak `count`, then one more every 5 ms (at most 3000: 15 s, 3000 fds)
    lst = socket.socket()
    lst.bind((sys.argv[3], 0))
    lst.listen(64)
    port = lst.getsockname()[1]
    def leak_one():
        c = socket.socket()
        c.bind((sys.argv[4], 0))
        c.connect((sys.argv[3], port))
        kept.append(lst.accept()[0])
        c.close()
    for _ in range(count):
        leak_one()
    print(json.dumps({"pid": os.getpid(), "port": port}), flush=True)
    for _ in range(3000):
        time.sleep(0.005)
        leak_one()
else:
    lst = socket.socket()
    lst.bind((sys.argv[3], 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    kept = [open(os.devnull) for _ in range(count)]
print(json.dumps({"pid": os.getpid(), "port": port}), flush=True)
while True:
    time.sleep(3600)
"""


class Lab(NamespaceLab):
    """SERVER and CLIENT on the namespace's lo, and the PROCs started in it."""

    def start(self, mode: str, count: int, nofile: tuple[int, int]) -> tuple[int, int]:
        """(pid, port) of a PROC started with RLIMIT_NOFILE `nofile`."""
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        argv = ["ip", "netns", "exec", self.netns, sys.executable, "-c", PROC, mode,
                str(count), SERVER, CLIENT]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=limit)
        self.procs.append(proc)
        ready, _w, _x = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            raise AssertionError(f"{mode} not ready: {proc.stderr.read()[-500:]}")
        hello = json.loads(line)
        assert hello["pid"] == proc.pid  # ip netns exec execs python: same pid
        return hello["pid"], hello["port"]


@pytest.fixture
def lab(netns: str) -> Iterator[Lab]:
    lab = Lab(netns)
    try:
        yield lab
    finally:
        lab.stop()


# ---------------------------------------------------------------- helpers

def doctor(run, netns: str, *more: str) -> list[dict]:
    """The live doctor's findings in `netns` (ages ignored: --min-age 0)."""
    code, out, err = run("doctor", "--json", "--netns", netns, "--window", "0",
                         "--min-age", "0", *more)
    assert code in (0, 1, 2), err
    return json.loads(out)["findings"]


def about(findings: list[dict], fid: str, **subject) -> list[dict]:
    return [f for f in findings if f["id"] == fid
            and all(f["subject"].get(k) == v for k, v in subject.items())]


def plan(run, netns: str, *ids: str) -> list[dict]:
    code, out, err = run("fix", *ids, "--netns", netns, "--window", "0", "--min-age", "0",
                         "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["mode"] == "plan"
    return doc["steps"]


def apply(run, netns: str, *ids: str) -> str:
    """`fix --apply` in text: the results table and the second doctor run's verdict."""
    code, out, err = run("fix", *ids, "--netns", netns, "--window", "0", "--min-age", "0",
                         "--apply")
    assert code == 0, err + out
    return out


def journal(state_dir) -> list[dict]:
    path = state_dir / "journal.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [e for e in lines if e["kind"] not in ("done", "verify")]  # changes only


def verified(state_dir) -> dict[str, str]:
    """target -> what the doctor, run again after the apply, made of the change."""
    path = state_dir / "journal.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return {e["target"]: e["verified"] for e in lines if e["kind"] == "verify"}


def nofile(pid: int) -> list[int]:
    with open(f"/proc/{pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    return [int(x) for x in line.split()[3:5]]


def ns_value(netns: str, key: str) -> str:
    return " ".join(sh("sysctl", "-n", key, netns=netns, timeout=10).stdout.split())


def host_value(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return " ".join(f.read().split())


def keepalive_timers(netns: str, port: int) -> list[bool]:
    """Per server-side ESTABLISHED socket on `port`: does ss -o show a keepalive timer?"""
    out = sh("ss", "-tnoH", "state", "established", "sport", "=", f":{port}",
             netns=netns, timeout=10).stdout
    return [("timer:(keepalive" in line) for line in out.splitlines() if line.strip()]


# ---------------------------------------------------------------- kill (+ prlimit)

def test_close_wait_leak_kill_and_prlimit(lab, netns, state_dir, run):
    pid, port = lab.start("leak", 6, (1024, 4096))
    steps = plan(run, netns, "close-wait-leak")
    assert {s["finding"] for s in steps} == {"close-wait-leak"}
    kill = [s for s in steps if s["action"] == "kill"]
    prl = [s for s in steps if s["action"] == "prlimit"]
    assert len(kill) == 1 and kill[0]["status"] == "change"
    assert kill[0]["target"] == f"state close-wait pid {pid}" and kill[0]["netns"] == netns
    assert kill[0]["current"] == "6 sockets"
    assert len(prl) == 1 and prl[0]["current"] == "soft 1024, hard 4096"
    assert prl[0]["new"] == "soft 4096, hard 4096"
    assert not journal(state_dir) and nofile(pid) == [1024, 4096]  # the plan changed nothing

    out = apply(run, netns, "close-wait-leak")
    assert "6 sockets destroyed" in out
    assert set(verified(state_dir).values()) == {"cured"} and len(verified(state_dir)) == 2
    assert nofile(pid) == [4096, 4096]
    assert sorted(e["kind"] for e in journal(state_dir)) == ["kill", "prlimit"]  # one per step

    code, out, err = run("fix", "--rollback")
    assert code == 0, err
    assert out.count("cannot undo") == 1 and "cannot be brought back" in out
    assert out.count("restored") == 1 and nofile(pid) == [1024, 4096]
    assert "nothing to roll back" in run("fix", "--rollback")[1]


def test_a_kill_that_does_not_cure_is_reported_not_cured(lab, netns, state_dir, run):
    """The leak goes on: the kill ends the CLOSE_WAIT sockets it found, the doctor run
    again finds new ones: the step is not cured, and the exit code says so."""
    pid, _port = lab.start("leak-on", 6, (4096, 4096))
    code, out, err = run("fix", "close-wait-leak", "--netns", netns, "--window", "0",
                         "--min-age", "0", "--apply", "--json")
    assert code == 1, err + out
    (kill,) = [r for r in json.loads(out)["results"] if r.get("target") == f"state close-wait pid {pid}"]
    assert kill["outcome"] == "set" and kill["verified"] == "not-cured"
    assert verified(state_dir)[f"state close-wait pid {pid}"] == "not-cured"


# ---------------------------------------------------------------- keepalive

def test_keepalive_off_retrofit_and_rollback(lab, netns, state_dir, run):
    pid, port = lab.start("idle", 3, (1024, 1024))
    assert keepalive_timers(netns, port) == [False] * 3
    (step,) = [s for s in plan(run, netns, "keepalive-off") if s["action"] == "keepalive"]
    assert step["target"] == f"pid {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()}) TCP sockets"
    assert step["action"] == "keepalive" and step["status"] == "change"
    assert step["current"] == "6 of 6 sockets without it"
    assert step["new"] == "keepalive 60s/10s x6"

    out = apply(run, netns, "keepalive-off")
    assert "6 sockets now keepalive 60s/10s x6" in out
    assert list(verified(state_dir).values()) == ["cured"]
    assert keepalive_timers(netns, port) == [True] * 3  # ss -o: the kernel runs the timer
    assert [e["kind"] for e in journal(state_dir)] == ["keepalive"] * 6

    code, out, err = run("fix", "--rollback")
    assert code == 0, err
    assert out.count("restored") == 6
    assert keepalive_timers(netns, port) == [False] * 3  # SO_KEEPALIVE off again
    (off,) = about(doctor(run, netns), "keepalive-off", pid=pid)  # and the doctor sees it
    assert off["evidence"][0]["value"] == 6  # both ends of 3 connections, one process


# ---------------------------------------------------------------- sysctl

RISKY_SET = {"net.ipv4.tcp_syncookies": ("0", "1"),  # kernel-tuning, warning
             "net.ipv4.tcp_timestamps": ("0", "1"),  # kernel-tuning, info
             "net.ipv4.tcp_retries2": ("3", "8")}  # kernel-tuning, warning
CT_EST = "net.netfilter.nf_conntrack_tcp_timeout_established"
KA_TIME = "net.ipv4.tcp_keepalive_time"
KA = [KA_TIME, "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"]


def test_sysctls_in_the_namespace_only(netns, state_dir, run):
    if not os.path.exists("/proc/sys/" + CT_EST.replace(".", "/")):
        pytest.skip("no nf_conntrack on this kernel")
    keys = [*RISKY_SET, CT_EST, *KA]
    host_before = {k: host_value(k) for k in keys}
    defaults = {k: ns_value(netns, k) for k in keys}
    for key, (risky, _fix) in RISKY_SET.items():
        sh("sysctl", "-w", f"{key}={risky}", netns=netns, timeout=10)
    # conntrack forgets an idle flow after 1 h, keepalive probes only after 2 h
    sh("sysctl", "-w", f"{CT_EST}=3600", netns=netns, timeout=10)
    broken = {k: ns_value(netns, k) for k in keys}

    steps = [s for s in plan(run, netns, "kernel-tuning", "timeout-mismatch")
             if s["action"] == "sysctl"]
    assert {s["target"] for s in steps if s["finding"] == "timeout-mismatch"} == \
        {CT_EST, *KA}
    assert {s["netns"] for s in steps} == {netns}  # nothing for the host
    want = {k: v for k, (_r, v) in RISKY_SET.items()}
    # or keepalive probing that ends inside the hour: 2820 s + 10 s x 6 (keepalive_target)
    want.update({CT_EST: "432000", KA_TIME: "2820", KA[1]: "10", KA[2]: "6"})
    assert {s["target"]: (s["current"], s["new"]) for s in steps} == \
        {k: (broken[k], v) for k, v in want.items()}

    out = apply(run, netns, "kernel-tuning", "timeout-mismatch")
    assert "verified" in out.splitlines()[0] or "verified" in out
    assert set(verified(state_dir)) == set(want) and "not-cured" not in verified(state_dir).values()
    assert {k: ns_value(netns, k) for k in want} == want
    assert {k: host_value(k) for k in keys} == host_before  # per namespace: host untouched
    # a second doctor run: kernel-tuning may still list values that differ from the
    # defaults (info, no fix); nothing risky and no mismatch is left to change
    again = plan(run, netns, "kernel-tuning", "timeout-mismatch")
    assert not [s for s in again if s["action"] == "sysctl"]
    assert {(e["target"], e["old"], e["new"]) for e in journal(state_dir)} == \
        {(k, broken[k], v) for k, v in want.items()}

    code, out, err = run("fix", "--rollback")
    assert code == 0, err
    assert out.count("restored") == len(want)
    assert {k: ns_value(netns, k) for k in keys} == broken
    assert {k: host_value(k) for k in keys} == host_before
    assert defaults[CT_EST] != broken[CT_EST]  # the namespace did start from the defaults


# ---------------------------------------------------------------- prlimit

def test_fd_exhaustion_prlimit_soft_up_to_hard(lab, netns, state_dir, run):
    pid, _port = lab.start("fds", 56, (64, 4096))
    steps = plan(run, netns, "fd-exhaustion")
    # the doctor also ranks the host's top fd users; `fix --netns` leaves them out
    assert {s["netns"] for s in steps} == {netns}
    assert [(s["target"], s["current"], s["new"], s["status"]) for s in steps
            if s["action"] == "prlimit"] == \
        [(f"pid {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()}) RLIMIT_NOFILE", "soft 64, hard 4096", "soft 4096, hard 4096",
          "change")]
    manual = [s for s in steps if s["status"] == "manual"]
    assert any("LimitNOFILE=4096" in s.get("text", "") for s in manual)  # printed, not dropped

    out = apply(run, netns, "fd-exhaustion")
    assert "soft 64, hard 4096 -> soft 4096, hard 4096" in out
    assert list(verified(state_dir).values()) == ["cured"]
    assert nofile(pid) == [4096, 4096]
    assert [e["kind"] for e in journal(state_dir)] == ["prlimit"]

    code, out, err = run("fix", "--rollback")
    assert code == 0 and "restored" in out, err
    assert nofile(pid) == [64, 4096]


# ---------------------------------------------------------------- the catalog

def test_every_sysctl_the_doctor_suggests_is_one_fix_can_set():
    """A doctor sysctl fix outside fix's catalog made the whole `halfopen fix` exit 64."""
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src", "halfopen", "diagnose")
    keys = {name for name, _t, _s, _r, value in RISKY if value is not None}
    for name in os.listdir(src):
        if name.endswith(".py"):
            with open(os.path.join(src, name)) as f:
                keys |= set(re.findall(r'sysctl_fix\(\s*"([^"]+)"', f.read()))
    keys |= {key for _field, key in PROBING_SYSCTLS}
    assert len(keys) >= 10
    assert sorted(keys - set(KNOBS)) == []


def test_doctor_options_are_refused_with_a_findings_file(state_dir, run, tmp_path):
    path = tmp_path / "doctor.json"
    path.write_text('{"findings": []}')
    code, _out, err = run("fix", "--findings", str(path), "--min-age", "0")
    assert code == 64 and "--findings" in err
    code, _out, err = run("fix", "--middlebox", "no-such-box")
    assert code == 64 and "no-such-box" in err


def test_middlebox_reaches_the_doctor_plan_only(state_dir, run):
    """--middlebox is passed to the doctor: a host timeout-mismatch is planned (not applied)."""
    from halfopen.diagnose.keepalive_target import Probing, wanted
    from halfopen.diagnose.middlebox import parse

    now = host_value(KA_TIME)
    want = wanted(parse("aws-nlb").idle_timeout_s, Probing(
        int(now), int(host_value(KA_TIME.replace("time", "intvl"))),
        int(host_value(KA_TIME.replace("time", "probes")))))
    code, out, err = run("fix", "timeout-mismatch", "--middlebox", "aws-nlb", "--window", "0",
                         "--json")
    assert code == 0, err
    steps = [s for s in json.loads(out)["steps"]
             if s["target"] == KA_TIME and s["netns"] == "host"]
    if want is not None and want.idle != int(now):
        assert [(s["current"], s["new"], s["status"]) for s in steps] == \
            [(now, str(want.idle), "change")]
    else:
        assert not steps
    assert host_value(KA_TIME) == now and not journal(state_dir)
