"""HostFacts JSON round trip inside a Snapshot: exact, and old snapshots still load."""

from __future__ import annotations

import json

from halfopen.model.host import (
    Conntrack,
    CounterRates,
    FileLimits,
    HostFacts,
    KernelLogLine,
    Memory,
    NamespaceHost,
    NetCounters,
    ProcessLimits,
    SockStat,
    StaleSocketFd,
    StaleSocketFds,
    Tunables,
)
from halfopen.model.snapshot import Snapshot


def full_facts() -> HostFacts:
    tun = Tunables(tcp_mem=(1, 2, 3), ip_local_port_range=(32768, 60999), somaxconn=4096,
                   tcp_keepalive_time=7200, raw={"net.core.somaxconn": "4096",
                                                 "net.ipv4.tcp_keepalive_time": "300"})
    ns = NamespaceHost(
        netns="host",
        counters=NetCounters(12.5, {"TcpExt.ListenOverflows": 3, "Tcp.MaxConn": -1}),
        rates=CounterRates(3.01, {"TcpExt.ListenOverflows": 2}, {"TcpExt.ListenOverflows": 2 / 3.01}),
        sockstat=SockStat(sockets_used=5, tcp_inuse=1, raw={"TCP": {"inuse": 1}}),
        tunables=tun,
        conntrack=Conntrack(True, count=4, max=262144, buckets=65536,
                            tcp_timeouts={"established": 432000}, stats={"drop": 0}, cpus=2),
    )
    return HostFacts(
        taken_at="2026-01-01T00:00:00+00:00", kernel="6.18", boot_time=1795289080.0,
        window_s=3.0, namespaces={"host": ns, "x": NamespaceHost("x", conntrack=Conntrack(False, "no module"))},
        files=FileLimits(378, 0, 2466170, 1048576), global_tunables=Tunables(tcp_max_orphans=5),
        memory=Memory(100, 50),
        processes={7: ProcessLimits(7, "nginx", "host", 10, 4, 1024, 4096)}, top_fd_pids=[7],
        kernel_log=[KernelLogLine("syn-flood", "TCP: request_sock_TCP: Possible SYN flooding on port 80.",
                                  1795289100.25, 20.25, 5, 6, port=80)],
        kernel_log_source="/dev/kmsg",
        stale_socket_fds=[StaleSocketFds(7, "nginx", "host", [StaleSocketFd(5, 1234, "TCP")])],
        checked_protocols=["TCP", "UNIX"],
        unavailable={"conntrack@x": "no module"},
    )


def test_round_trip_exact():
    snap = Snapshot(host="h", kernel="6.18", taken_at="2026-12-01T12:00:00+00:00", source="sock_diag",
                    namespaces=["host"], sockets=[], host_facts=full_facts())
    text = json.dumps(snap.to_dict())
    back = Snapshot.from_dict(json.loads(text))
    assert back == snap
    assert json.dumps(back.to_dict()) == text


def test_old_snapshot_without_host_facts_loads():
    snap = Snapshot(host="h", kernel="6.18", taken_at="2026-12-01T12:00:00+00:00", source="sock_diag",
                    namespaces=["host"], sockets=[])
    d = snap.to_dict()
    del d["host_facts"]
    assert Snapshot.from_dict(d).host_facts is None


def test_non_default():
    tun = full_facts().namespaces["host"].tunables
    nd = tun.non_default()
    assert list(nd) == ["net.ipv4.tcp_keepalive_time"]
    assert nd["net.ipv4.tcp_keepalive_time"][1].value == "7200"
