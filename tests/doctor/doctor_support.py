"""Support for the doctor's tests: real processes in a test namespace, and the CLI."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from tests.helpers import run_halfopen, sh

HERE = os.path.dirname(os.path.abspath(__file__))
PROCS = os.path.join(HERE, "procs.py")
SERVER = "198.18.0.1"
CLIENT = "198.18.0.2"
READY_TIMEOUT_S = 10.0
DOCTOR_EVERY_S = 1.5
SPOOFED_NET = "198.19.0.0/16"  # raw SYN sources (procs.py syn-flood), inside 198.18.0.0/15
NGINX_CONF = """daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    keepalive_timeout {keepalive};
    server {{
        listen {addr}:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


class Lab:
    """A namespace with SERVER and CLIENT on lo, and the processes started in it."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.procs: list[subprocess.Popen] = []
        for addr in (SERVER, CLIENT):
            sh("ip", "addr", "add", f"{addr}/32", "dev", "lo", netns=netns, timeout=30)

    def spawn(self, *args: str, prefix: Sequence[str] = (),
              wait_ready: bool = True) -> subprocess.Popen:
        """procs.py ARGS in the namespace, after `prefix` (e.g. prlimit) when given."""
        argv = ["ip", "netns", "exec", self.netns, *prefix, sys.executable, PROCS, *args]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        if wait_ready:
            r, _, _ = select.select([p.stdout], [], [], READY_TIMEOUT_S)
            line = p.stdout.readline() if r else ""
            if line.strip() != "ready":
                p.kill()
                raise AssertionError(f"{args} not ready: {line!r} {p.stderr.read()[-500:]}")
        return p

    def popen(self, *argv: str) -> subprocess.Popen:
        """Any program in the namespace; stopped (by its pid) with the others."""
        p = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def drop_from(self, addr: str, *match: str) -> None:
        """An nft rule in the namespace: nothing from `addr` (and `match`) arrives any more."""
        for rule in (["add", "table", "inet", "hodoc"],
                     ["add", "chain", "inet", "hodoc", "in",
                      "{ type filter hook input priority 0 ; }"],
                     ["add", "rule", "inet", "hodoc", "in", "ip", "saddr", addr, *match, "drop"]):
            sh("nft", *rule, netns=self.netns, timeout=10)

    def spoofed_link(self) -> None:
        """A link for SPOOFED_NET: SYN-ACKs to spoofed sources leave on it, nobody answers.

        A veth pair inside the namespace (no dummy module needed): the far end has no
        address, so neighbour resolution for 198.19.x.y fails and the SYN-ACKs are dropped
        while each request waits in the SYN queue as under a real flood.
        """
        sh("ip", "link", "add", "hodA", "type", "veth", "peer", "name", "hodB", netns=self.netns,
           timeout=30)
        sh("ip", "addr", "add", "198.19.255.254/16", "dev", "hodA", netns=self.netns, timeout=30)
        for dev in ("hodA", "hodB"):
            sh("ip", "link", "set", dev, "up", netns=self.netns, timeout=30)

    def nginx(self, directory: str, port: int, keepalive: str) -> subprocess.Popen:
        """A real nginx on SERVER:port with its own config, pid and log paths in `directory`."""
        conf = os.path.join(directory, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=directory, addr=SERVER, port=port, keepalive=keepalive))
        p = self.popen("nginx", "-c", conf)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not os.path.exists(os.path.join(directory, "nginx.pid")):
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                raise AssertionError(f"nginx did not start: {p.stderr.read()[-500:]}")
            time.sleep(0.05)
        return p

    def stop(self) -> None:
        for p in self.procs:  # a polite stop first: nginx's master takes its workers along
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()


def doctor(*args: str, timeout: float = 60) -> tuple[int, dict]:
    """Run `halfopen doctor --json ARGS`; (exit code, parsed JSON)."""
    proc = run_halfopen("doctor", "--json", *args, timeout=timeout)
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"doctor {args} -> {proc.returncode}: {proc.stdout[:500]} "
                             f"{proc.stderr[-1000:]}") from None
    return proc.returncode, data


def doctor_until(rule: str, pid: int, *args: str, deadline_s: float = 20) -> dict:
    """Run the doctor every DOCTOR_EVERY_S until it reports `rule` for `pid` (bounded)."""
    deadline = time.monotonic() + deadline_s
    while True:
        time.sleep(DOCTOR_EVERY_S)
        _rc, data = doctor(*args)
        if rule in ids(data, pid) or time.monotonic() > deadline:
            return data


def ids(data: dict, pid: int | None = None) -> set[str]:
    return {f["id"] for f in data["findings"]
            if pid is None or f["subject"].get("pid") == pid}


def finding(data: dict, fid: str, **subject) -> dict:
    for f in data["findings"]:
        if f["id"] == fid and all(f["subject"].get(k) == v for k, v in subject.items()):
            return f
    raise AssertionError(f"no {fid} {subject} in " +
                         json.dumps([(f["id"], f["severity"], f["subject"]) for f in data["findings"]]))
