"""Journals written before the fix actions were classes (and before the write-ahead
format: lines without "intent", sysctl lines without the namespace's identity) still
roll back, each line by the action its "kind" names."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from tests.helpers import sh

from halfopen.kernel import current_identity

KA = "net.ipv4.tcp_keepalive_time"


def ns_value(netns: str, key: str) -> str:
    return " ".join(sh("sysctl", "-n", key, netns=netns).stdout.split())


def nofile(pid: int) -> tuple[int, int]:
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def test_an_old_journal_rolls_back_line_by_line(netns, run, tmp_path):
    sh("sysctl", "-qw", f"{KA}=300", netns=netns)  # as the old run left it
    conf = tmp_path / "60-halfopen.conf"
    conf.write_text(f"{KA} = 300\n")  # written by that run, no file before it

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, 4096))  # raised by that run

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             preexec_fn=limit)
    try:
        now = current_identity.process(child.pid)
        assert now is not None
        lines = [
            {"id": "old:1", "time": "2025-01-01T00:00:00+00:00", "kind": "sysctl", "target": KA,
             "netns": netns, "old": "7200", "new": "300", "finding": "keepalive-off"},
            {"id": "old:2", "time": "2025-01-01T00:00:01+00:00", "kind": "prlimit",
             "target": f"pid {child.pid} nofile", "pid": child.pid, "start": now.start_time,
             "comm": now.comm, "old": [1024, 4096], "new": [2048, 4096], "finding": "fd-exhaustion"},
            {"id": "old:3", "time": "2025-01-01T00:00:02+00:00", "kind": "kill",
             "target": "state close-wait sport = :1", "netns": "host", "old": "1 sockets",
             "new": "destroyed", "finding": "close-wait-leak"},
            {"id": "old:4", "time": "2025-01-01T00:00:03+00:00", "kind": "file",
             "target": str(conf), "old": None, "new": f"{KA} = 300\n", "backup": None},
            {"id": "old:5", "time": "2025-01-01T00:00:04+00:00", "kind": "prlimit",
             "target": "pid 1 nofile", "pid": 1, "old": [1, 1], "new": [2, 2]},  # no "start"
        ]
        journal = tmp_path / "journal.jsonl"
        journal.write_text("".join(json.dumps(e) + "\n" for e in lines))

        code, out, err = run("fix", "--rollback", "--journal", str(journal), "--json")
        got = [(r["target"], r["outcome"]) for r in json.loads(out)["results"]]
        assert code == 2 and "could not be restored" in err  # the line without "start"
        assert got == [("pid 1 nofile", "failed"), (str(conf), "removed"),
                       ("state close-wait sport = :1", "cannot undo"),
                       (f"pid {child.pid} nofile", "restored"), (KA, "restored")], got
        assert ns_value(netns, KA) == "7200"
        assert nofile(child.pid) == (1024, 4096)
        assert not conf.exists()
        # rolled back once: only the line that could not be read stays pending
        code, out, _err = run("fix", "--rollback", "--journal", str(journal), "--json")
        assert [r["target"] for r in json.loads(out)["results"]] == ["pid 1 nofile"]
    finally:
        child.kill()
        child.wait(timeout=10)
