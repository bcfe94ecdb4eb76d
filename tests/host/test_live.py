"""Host collectors on this machine, checked against independent sources."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from tests.helpers import run_halfopen, sh

from halfopen.collect import netns as netns_mod
from halfopen.collect.host import collect_host

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def sysctl(name: str, ns: str | None = None) -> str:
    return " ".join(sh("sysctl", "-n", name, netns=ns).stdout.split())


def test_host_matches_sysctl_and_proc():
    facts = collect_host(window=0.3, stale_fds=False, kmsg_patterns={})
    host = facts.namespaces["host"]
    for name, value in host.tunables.raw.items():
        assert value == sysctl(name), name
    assert host.tunables.tcp_keepalive_time == int(sysctl("net.ipv4.tcp_keepalive_time"))
    assert facts.global_tunables.tcp_mem == tuple(int(w) for w in sysctl("net.ipv4.tcp_mem").split())
    assert facts.files.file_max == int(sysctl("fs.file-max"))
    assert facts.files.nr_open == int(sysctl("fs.nr_open"))
    assert 0.25 < host.rates.window_s < 1.5
    assert host.counters.get("Tcp.MaxConn") == -1
    assert set(host.rates.delta) <= set(host.counters.values)
    assert facts.memory.available_kb <= facts.memory.total_kb
    with open("/proc/stat") as f:
        assert facts.boot_time == float(re.search(r"^btime (\d+)", f.read(), re.M)[1])


@pytest.mark.skipif(shutil.which("conntrack") is None, reason="conntrack tool not installed")
def test_conntrack_matches_tool():
    ct = collect_host(window=0, stale_fds=False, kmsg_patterns={}).namespaces["host"].conntrack
    if not ct.loaded:
        pytest.skip(ct.reason)
    count = int(sh("conntrack", "-C").stdout.strip())
    assert abs(ct.count - count) <= 50
    assert ct.max == int(sysctl("net.netfilter.nf_conntrack_max"))
    assert ct.tcp_timeouts["established"] == int(
        sysctl("net.netfilter.nf_conntrack_tcp_timeout_established"))


def test_own_process_limits():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    facts = collect_host(pids=[os.getpid()], window=0, stale_fds=False, kmsg_patterns={})
    me = facts.processes[os.getpid()]
    inf = resource.RLIM_INFINITY
    assert (me.nofile_soft, me.nofile_hard) == (-1 if soft == inf else soft, -1 if hard == inf else hard)
    assert me.netns == "host" and me.fd_count > 0


def test_prlimit_child_limits():
    child = subprocess.Popen(["prlimit", "--nofile=100:200", "sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until prlimit has exec'd sleep
            with open(f"/proc/{child.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    break
            time.sleep(0.02)
        facts = collect_host(pids=[child.pid], window=0, stale_fds=False, kmsg_patterns={})
        got = facts.processes[child.pid]
        assert (got.comm, got.nofile_soft, got.nofile_hard) == ("sleep", 100, 200)
        assert got.fd_count == len(os.listdir(f"/proc/{child.pid}/fd"))
    finally:
        child.kill()
        child.wait(5)


def test_kmsg_marker_line():
    marker = f"halfopen-test-{uuid.uuid4().hex}"
    with open("/dev/kmsg", "w") as f:
        f.write(f"<6>{marker} on port 1234\n")
    facts = collect_host(window=0, stale_fds=False,
                         kmsg_patterns={"marker": re.compile(marker + r" on port (?P<port>\d+)")})
    assert facts.kernel_log_source == "/dev/kmsg"
    lines = [ln for ln in facts.kernel_log if ln.kind == "marker"]
    assert len(lines) == 1 and lines[0].port == 1234 and lines[0].level == 6
    assert abs(lines[0].wall_time - time.time()) < 60


def test_per_namespace_counters_and_tunables(netns):
    sh("sysctl", "-w", "net.ipv4.tcp_keepalive_time=321", netns=netns)
    # one TCP connection inside the namespace
    sh(sys.executable, "-c", "import socket; l=socket.create_server(('127.0.0.1',0)); "
       "c=socket.create_connection(l.getsockname()); a,_=l.accept()", netns=netns)
    facts = collect_host([netns_mod.current(), netns_mod.named(netns)], window=0, stale_fds=False,
                         kmsg_patterns={})
    host, inner = facts.namespaces["host"], facts.namespaces[netns]
    assert inner.tunables.tcp_keepalive_time == 321
    assert host.tunables.tcp_keepalive_time == int(sysctl("net.ipv4.tcp_keepalive_time")) != 321
    assert inner.counters.get("Tcp.ActiveOpens") == 1 == inner.counters.get("Tcp.PassiveOpens")
    assert host.counters.get("Tcp.ActiveOpens") != 1 or host.counters.values != inner.counters.values
    assert inner.tunables.tcp_mem is None  # host-wide, lives in global_tunables
    assert inner.sockstat.tcp_inuse == 0
    assert f"netns@{netns}" not in facts.unavailable


SERVER = r"""
import socket, sys, time
l = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(l.getsockname())
a, _ = l.accept()
fresh = socket.socket()  # never connected: in no table, but not shut down
print(l.getsockname()[1], a.fileno(), c.fileno(), fresh.fileno(), flush=True)
time.sleep(30)
"""


def test_stale_socket_fd_after_ss_kill(netns):
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER],
                            stdout=subprocess.PIPE, text=True)
    try:
        port, afd, cfd, freshfd = (int(w) for w in proc.stdout.readline().split())
        sh("ss", "-K", "state", "established", "sport", "=", f":{port}", netns=netns)
        facts = collect_host([netns_mod.named(netns)], window=0, kmsg_patterns={})
        mine = [s for s in facts.stale_socket_fds if s.pid == proc.pid]
        assert len(mine) == 1 and mine[0].netns == netns and mine[0].comm.startswith("python")
        by_fd = {f.fd: f for f in mine[0].fds}
        assert by_fd[afd].protocol == "TCP" and by_fd[afd].hup is True
        assert by_fd[freshfd].hup is False
        assert by_fd[afd].inode == os.stat(f"/proc/{proc.pid}/fd/{afd}").st_ino
        assert proc.pid in facts.processes  # holders of stale fds get their limits
        assert "TCP" in facts.checked_protocols
    finally:
        proc.kill()
        proc.wait(5)


def test_take_full_fills_host_facts(netns):
    from halfopen.collect import sockets, take
    from halfopen.model.snapshot import Snapshot
    query = sockets.Query(owners=True, namespaces=(netns_mod.named(netns),))
    snap = take.take_full(query, window=0.2)
    assert set(snap.host_facts.namespaces) == {netns}
    assert snap.host_facts.namespaces[netns].rates is not None
    assert Snapshot.from_dict(snap.to_dict()) == snap
    assert take.take(query).host_facts is None


SETNS_CLIENT = r"""
import ctypes, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
target = os.open(sys.argv[1], os.O_RDONLY)
assert libc.setns(target, CLONE_NEWNET) == 0
os.system("ip link set lo up")
l = socket.create_server(("127.0.0.1", 0))   # created inside the test namespace
c = socket.create_connection(l.getsockname())
a, _ = l.accept()
assert libc.setns(home, CLONE_NEWNET) == 0      # back in the host namespace
print(l.getsockname()[1], l.fileno(), a.fileno(), c.fileno(), flush=True)
time.sleep(30)
"""


def test_sockets_of_another_namespace_are_not_stale(netns):
    """A process in the host namespace holding sockets it made inside another namespace
    (setns and back, like halfopen lab or ip netns exec wrappers): not fd-leak; the one
    destroyed with ss -K still is."""
    proc = subprocess.Popen([sys.executable, "-c", SETNS_CLIENT, f"/run/netns/{netns}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port, lfd, afd, cfd = (int(w) for w in proc.stdout.readline().split())
        assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino == netns_mod.current().inode

        def stale_fds() -> dict[int, object]:
            facts = collect_host(window=0, kmsg_patterns={})  # the host namespace only
            mine = [s for s in facts.stale_socket_fds if s.pid == proc.pid]
            return {f.fd: f for entry in mine for f in entry.fds}

        assert not {lfd, afd, cfd} & set(stale_fds())
        sh("ss", "-K", "state", "established", "sport", "=", f":{port}", netns=netns)
        got = stale_fds()
        assert afd in got and got[afd].protocol == "TCP" and got[afd].hup is True
        assert lfd not in got
    finally:
        proc.kill()
        proc.wait(5)


def test_doctor_inside_a_namespace_reads_host_wide_tunables(netns):
    """tcp_mem and tcp_max_orphans live only in the initial namespace: read from there."""
    import json
    out = run_halfopen("doctor", "--window", "0", "--json", netns=netns)
    report = json.loads(out.stdout)
    assert {"tcp-memory-pressure", "orphan-pressure"} <= set(report["checked"])
    assert not [f for f in report["findings"] if f["severity"] == "unknown"
                and f["id"] in ("tcp-memory-pressure", "orphan-pressure")]
