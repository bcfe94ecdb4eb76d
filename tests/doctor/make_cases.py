"""Write tests/doctor/cases/*.json: one recorded snapshot per state the kernel won't give on demand.

Run `python3 tests/doctor/make_cases.py` after changing a case here; the JSON
files are what the tests read (snapshot in, expected findings out).
"""

from __future__ import annotations

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
T = "2026-01-01T12:00:00+00:00"
NOW = 1767268800.0  # T as epoch seconds
STATE = {"established": 1, "close_wait": 8, "listen": 10, "syn_recv": 3, "time_wait": 6,
         "fin_wait2": 5}


def tcp_info(**kw):
    ti = dict(state=1, ca_state=0, retransmits=0, probes=0, backoff=0, options=7, snd_wscale=7,
              rcv_wscale=7, rto=204000, ato=40000, snd_mss=1448, rcv_mss=1448, unacked=0,
              sacked=0, lost=0, retrans=0, fackets=0, last_data_sent=100, last_ack_sent=0,
              last_data_recv=100, last_ack_recv=100, pmtu=1500, rcv_ssthresh=64000, rtt=100,
              rttvar=50, snd_ssthresh=2147483647, snd_cwnd=10, advmss=1448, reordering=3,
              rcv_rtt=0, rcv_space=14600, total_retrans=0)
    ti.update(kw)
    return ti


def sock(state, lport, paddr="0.0.0.0", pport=0, pid=None, comm="", netns="host",
         laddr="10.0.0.1", recv_q=0, send_q=0, timer="off", retrans=0, info=None, inode=1,
         direction=None):
    d = {"netns": netns, "family": 4, "state": state, "recv_q": recv_q, "send_q": send_q,
         "local_addr": laddr, "local_port": lport, "peer_addr": paddr, "peer_port": pport,
         "timer": timer, "timer_expires_ms": 0, "timer_retrans": retrans, "uid": 0,
         "inode": inode, "cookie": inode}
    if direction is not None:
        d["direction"] = direction
    if pid is not None:
        d["owners"] = [{"pid": pid, "comm": comm, "fd": 3 + inode % 60000}]
    if info is not None:
        d["tcp_info"] = info
    return d


def tunables(**kw):
    t = dict(tcp_mem=[287898, 383867, 575796], tcp_max_orphans=65536, tcp_max_tw_buckets=65536,
             ip_local_port_range=[32768, 60999], somaxconn=4096, tcp_max_syn_backlog=1024,
             tcp_syncookies=1, tcp_synack_retries=5, tcp_syn_retries=6, tcp_keepalive_time=7200,
             tcp_keepalive_intvl=75, tcp_keepalive_probes=9, tcp_fin_timeout=60, tcp_retries1=3,
             tcp_retries2=15, tcp_orphan_retries=0, tcp_tw_reuse=2, tcp_abort_on_overflow=0,
             tcp_timestamps=1)
    t.update(kw)
    raw = {}
    for k, v in t.items():
        name = ("net.core." if k == "somaxconn" else "net.ipv4.") + k
        raw[name] = " ".join(map(str, v)) if isinstance(v, list) else str(v)
    t["raw"] = raw
    return t


def namespace(netns="host", rates=None, tun=None, ct=None, sockstat=None):
    return {"netns": netns,
            "counters": {"sampled_at": 100.0, "values": {}},
            "rates": {"window_s": 3.0, "delta": rates or {},
                      "per_s": {k: v / 3.0 for k, v in (rates or {}).items()}},
            "sockstat": dict(dict(sockets_used=100, tcp_inuse=50, tcp_orphan=0, tcp_tw=10,
                                  tcp_alloc=60, tcp_mem=100, udp_inuse=0, udp_mem=0,
                                  tcp6_inuse=0, udp6_inuse=0, raw={}), **(sockstat or {})),
            "tunables": tun or tunables(),
            "conntrack": ct if ct is not None else {"loaded": False, "reason": "not loaded"}}


def host(namespaces=None, processes=(), kernel_log=(), memory=None, files=None, stale=(),
         unavailable=None, global_tun=None):
    return {"taken_at": T, "kernel": "6.8.0", "boot_time": NOW - 86400, "window_s": 3.0,
            "namespaces": namespaces or [namespace()],
            "files": files or {"allocated": 5000, "free": 0, "file_max": 1000000,
                               "nr_open": 1048576},
            "global_tunables": global_tun,
            "memory": memory or {"total_kb": 16000000, "available_kb": 12000000},
            "processes": list(processes), "top_fd_pids": [p["pid"] for p in processes],
            "kernel_log": list(kernel_log), "kernel_log_source": "/dev/kmsg",
            "stale_socket_fds": list(stale), "checked_protocols": ["TCP", "TCPv6"],
            "unavailable": unavailable or {}}


def proc(pid, comm, fds, soft, hard=None, netns="host", socket_fds=None):
    return {"pid": pid, "comm": comm, "netns": netns, "fd_count": fds,
            "socket_fds": socket_fds if socket_fds is not None else fds - 10,
            "nofile_soft": soft, "nofile_hard": hard if hard is not None else soft}


def klog(kind, text, ago_s, port=None, pid=None, comm=""):
    return {"kind": kind, "text": text, "wall_time": NOW - ago_s, "uptime_s": 86400 - ago_s,
            "seq": 1, "level": 4, "port": port, "pid": pid, "comm": comm}


def snapshot(sockets, host_facts="default", processes=()):
    return {"schema": "halfopen.snapshot/1", "host": "case", "kernel": "6.8.0", "taken_at": T,
            "source": "sock_diag", "namespaces": ["host"], "notes": [],
            "processes": [{"pid": p, "comm": c, "fd_count": 100, "socket_inodes": []}
                          for p, c in processes],
            "sockets": sockets,
            "host_facts": host() if host_facts == "default" else host_facts}


CASES = {}


def case(name, description, snap, expect, absent=(), options=None, nginx=None, status=None,
         not_expect=()):
    CASES[name] = {"description": description, "options": options or {}, "nginx": nginx,
                   "expect": expect, "absent": list(absent), "status": status, "snapshot": snap}
    if not_expect:
        CASES[name]["not_expect"] = list(not_expect)


# ---------------------------------------------------------------- close-wait-leak
cw = [sock("close_wait", 8080, f"10.1.0.{i % 7}", 40000 + i, 812, "nginx", recv_q=1 if i % 3 else 0,
           info=tcp_info(state=8, last_ack_recv=(100 + i * 30) * 1000,
                         last_data_recv=(110 + i * 30) * 1000), inode=1000 + i)
      for i in range(150)]
case("close-wait-leak-critical",
     "150 CLOSE_WAIT sockets in nginx aged 100 s .. 75 min; fd limit 1024 with 900 open: "
     "the leak reaches RLIMIT_NOFILE within a day -> critical, named by pid",
     snapshot(cw + [sock("listen", 8080, pid=812, comm="nginx", send_q=511, inode=1)],
              host(processes=[proc(812, "nginx", 900, 1024, 4096)])),
     [{"id": "close-wait-leak", "severity": "critical",
       "subject": {"pid": 812, "comm": "nginx", "port": 8080, "netns": "host"}}],
     absent=["dead-peer", "keepalive-off"], status="critical")

young = [sock("close_wait", 8080, "10.1.0.9", 41000 + i, 812, "nginx",
              info=tcp_info(state=8, last_ack_recv=2000, last_data_recv=2000), inode=3000 + i)
         for i in range(50)]
case("close-wait-young-is-not-a-leak",
     "50 CLOSE_WAIT sockets 2 s old (a busy server closing): not a leak, status ok; said in "
     "one info finding (count, oldest age: not yet judged)",
     snapshot(young), [{"id": "close-wait-leak", "severity": "info",
                        "subject": {"pid": 812, "port": 8080}}],
     absent=["close-wait-leak"], status="ok")

pool = [sock("close_wait", 41000 + i, "10.20.0.5", 5432, 901, "java", laddr="10.0.0.1",
             recv_q=1, direction="out",
             info=tcp_info(state=8, last_ack_recv=(4000 + i * 10) * 1000,
                           last_data_recv=(4010 + i * 10) * 1000), inode=5100 + i)
        for i in range(8)]
case("close-wait-outbound-pool-old-is-critical",
     "a client's pool holds 8 CLOSE_WAIT connections to 10.20.0.5:5432 older than an hour: "
     "outbound close-wait-leak, critical by age, named by the remote service",
     snapshot(pool), [{"id": "close-wait-leak", "severity": "critical",
                       "subject": {"pid": 901, "direction": "out", "peer": "10.20.0.5:5432",
                                   "port": 5432}}])
pool_young = [dict(s, tcp_info=tcp_info(state=8, last_ack_recv=40_000, last_data_recv=41_000))
              for s in pool[:4]]
case("close-wait-outbound-nginx-timeout",
     "a pool holds 4 CLOSE_WAIT connections 40 s old to nginx on this host "
     "(10.0.0.1:80, keepalive_timeout 15 s): warning, the server's timeout in the evidence",
     snapshot([dict(s, peer_addr="10.0.0.1", peer_port=80) for s in pool_young]
              + [sock("listen", 80, pid=300, comm="nginx", send_q=511, laddr="0.0.0.0",
                      inode=9)], processes=[(300, "nginx")]),
     [{"id": "close-wait-leak", "severity": "warning",
       "subject": {"pid": 901, "direction": "out", "peer": "10.0.0.1:80", "port": 80}}],
     nginx={"keepalive_timeouts": [["http", 15.0]],
            "listens": [{"address": "80", "port": 80, "so_keepalive": None,
                         "server_name": ""}], "pids": [300]})

few_old = [sock("close_wait", 9000, "10.1.0.5", 42000 + i, 77, "java", recv_q=0,
                info=tcp_info(state=8, last_ack_recv=7_200_000, last_data_recv=7_300_000),
                inode=4000 + i) for i in range(3)]
case("close-wait-few-but-old",
     "3 CLOSE_WAIT sockets two hours old in one process: fewer than catpaw's 100, still a "
     "leak -> warning",
     snapshot(few_old), [{"id": "close-wait-leak", "severity": "warning",
                          "subject": {"pid": 77, "comm": "java"}}])

# ---------------------------------------------------------------- dead-peer / keepalive-off
dp = [sock("established", 5432, "10.2.0.8", 50000 + i, 4242, "postgres", send_q=20000,
           timer="on", retrans=6,
           info=tcp_info(retransmits=6, backoff=6, unacked=10, last_ack_recv=95_000,
                         last_data_sent=95_000), inode=5000 + i) for i in range(4)]
case("dead-peer-retransmitting",
     "4 ESTABLISHED sockets retransmitting 6 times, no ACK for 95 s, to one peer: dead-peer",
     snapshot(dp), [{"id": "dead-peer", "severity": "warning",
                     "subject": {"pid": 4242, "port": 5432}}],
     absent=["close-wait-leak", "keepalive-off"])

probes = [sock("established", 6379, "10.2.0.9", 51000, 99, "redis-server", timer="keepalive",
               retrans=3, info=tcp_info(probes=3, last_ack_recv=400_000, last_data_recv=400_000,
                                        last_data_sent=400_000), inode=6000)]
case("dead-peer-keepalive-probes",
     "keepalive probes unanswered (3 out): dead-peer",
     snapshot(probes), [{"id": "dead-peer", "subject": {"pid": 99}}])

idle = [sock("established", 7000, f"10.3.0.{i}", 52000 + i, 555, "myapp",
             info=tcp_info(last_data_recv=7_200_000, last_data_sent=7_200_000,
                           last_ack_recv=7_200_000), inode=7000 + i) for i in range(12)]
idle_lo = [sock("established", 7001, "127.0.0.1", 53000, 555, "myapp", laddr="127.0.0.1",
                info=tcp_info(last_data_recv=7_200_000, last_data_sent=7_200_000,
                              last_ack_recv=7_200_000), inode=7100)]
case("keepalive-off-idle-two-hours",
     "12 connections idle 2 h with no keepalive timer -> warning; the loopback one is not "
     "counted (a local peer cannot vanish unnoticed)",
     snapshot(idle + idle_lo), [{"id": "keepalive-off", "severity": "warning",
                                 "subject": {"pid": 555, "port": 7000}}],
     absent=["dead-peer"])

# ---------------------------------------------------------------- timeout-mismatch
case("timeout-mismatch-aws-nlb",
     "behind an AWS NLB (350 s) with tcp_keepalive_time 7200: mismatch",
     snapshot([]), [{"id": "timeout-mismatch", "severity": "warning",
                     "subject": {"middlebox": "aws-nlb"}}],
     options={"middleboxes": ["aws-nlb"]})
case("timeout-mismatch-nlb-ok",
     "behind an AWS NLB with tcp_keepalive_time 240: fine",
     snapshot([], host(namespaces=[namespace(tun=tunables(tcp_keepalive_time=240))])),
     [], absent=["timeout-mismatch"], options={"middleboxes": ["aws-nlb"]},
     status="info-or-ok")
case("timeout-mismatch-gcp-nginx",
     "nginx keepalive_timeout 75 s behind a GCP load balancer (600 s): 502s",
     snapshot([], processes=[(300, "nginx")]),
     [{"id": "timeout-mismatch", "severity": "warning",
       "subject": {"comm": "nginx", "middlebox": "gcp-lb"}}],
     options={"middleboxes": ["gcp-lb"]},
     nginx={"keepalive_timeouts": [["http", 75.0]],
            "listens": [{"address": "80", "port": 80, "so_keepalive": None,
                         "server_name": ""}], "pids": [300]})
case("timeout-mismatch-conntrack",
     "conntrack forgets established flows after 3600 s, keepalive starts at 7200 s",
     snapshot([], host(namespaces=[namespace(ct={
         "loaded": True, "count": 10, "max": 262144, "buckets": 65536,
         "tcp_timeouts": {"established": 3600}, "stats": {}, "cpus": 2})])),
     [{"id": "timeout-mismatch", "subject": {"middlebox": "conntrack"}}])

# ---------------------------------------------------------------- listeners
flood = [sock("syn_recv", 443, f"203.0.{i // 250}.{i % 250}", 1024 + i, laddr="10.0.0.1",
              inode=0) for i in range(300)]
case("syn-flood-many-sources",
     "300 half-open handshakes from 300 sources to port 443, accept queue empty, cookies "
     "sent: syn-flood, not accept-queue-overflow",
     snapshot(flood + [sock("listen", 443, pid=10, comm="haproxy", send_q=256, inode=9)],
              host(namespaces=[namespace(rates={"TcpExt.SyncookiesSent": 900})],
                   kernel_log=[klog("syn-flood", "TCP: request_sock_TCP: Possible SYN flooding "
                                    "on port 0.0.0.0:443. Sending cookies.", 30, port=443)])),
     [{"id": "syn-flood", "severity": "critical", "subject": {"port": 443, "pid": 10}}],
     absent=["accept-queue-overflow"])
proxy_in = [sock("close_wait", 8443, f"10.30.0.{i}", 50000 + i, 77, "envoy", recv_q=1,
                 direction="in", info=tcp_info(state=8, last_ack_recv=600_000,
                                               last_data_recv=610_000), inode=6100 + i)
            for i in range(12)]
proxy_out = [sock("close_wait", 42000 + i, "10.40.0.9", 8080, 77, "envoy", recv_q=1,
                  direction="out", info=tcp_info(state=8, last_ack_recv=300_000,
                                                 last_data_recv=310_000), inode=6200 + i)
             for i in range(3)]
case("close-wait-proxy-both-sides",
     "a proxy holds 12 CLOSE_WAIT from its clients (inbound, port 8443) and 3 to its upstream "
     "10.40.0.9:8080 (outbound): two findings, each side's own fix; the server-side kill "
     "leaves the upstream connections alone",
     snapshot(proxy_in + proxy_out + [sock("listen", 8443, pid=77, comm="envoy", send_q=128,
                                           laddr="0.0.0.0", inode=60)]),
     [{"id": "close-wait-leak", "severity": "warning",
       "subject": {"pid": 77, "direction": "in", "port": 8443},
       "fix": {"filter": "state close-wait pid 77 and ( sport = :8443 )"}},
      {"id": "close-wait-leak", "severity": "warning",
       "subject": {"pid": 77, "direction": "out", "peer": "10.40.0.9:8080", "port": 8080},
       "fix": {"filter": "state close-wait pid 77 and ( dst 10.40.0.9:8080 )"}}])
small = [sock("syn_recv", 8000, f"198.19.0.{i + 1}", 3000 + i, laddr="10.0.0.1", inode=0)
         for i in range(6)]
case("syn-flood-backlog-5",
     "a Python listener with backlog 5: 6 half-open handshakes (the queue is full), SYNs "
     "dropped with syncookies off -> per-port critical with the owner, not namespace-wide",
     snapshot(small + [sock("listen", 8000, pid=31, comm="python3", send_q=5, inode=7)],
              host(namespaces=[namespace(rates={"TcpExt.TCPReqQFullDrop": 40},
                                         tun=tunables(tcp_syncookies=0))])),
     [{"id": "syn-flood", "severity": "critical",
       "subject": {"port": 8000, "pid": 31, "direction": "in", "syncookies": 0}}],
     not_expect=[{"id": "syn-flood", "subject": {"port": None}}])
aq = [sock("syn_recv", 8000, "10.9.0.1", 2000 + i, inode=0) for i in range(3)]
case("accept-queue-full-is-not-syn-flood",
     "the accept queue of port 8000 is full (129/128), ListenOverflows grow, and the kernel "
     "printed 'Possible SYN flooding' for the port: accept-queue-overflow, not syn-flood",
     snapshot(aq + [sock("listen", 8000, pid=20, comm="gunicorn", recv_q=129, send_q=128,
                         inode=8)],
              host(namespaces=[namespace(rates={"TcpExt.ListenOverflows": 40,
                                                "TcpExt.SyncookiesSent": 5})],
                   kernel_log=[klog("syn-flood", "TCP: request_sock_TCP: Possible SYN flooding "
                                    "on port 0.0.0.0:8000. Sending cookies.", 20, port=8000)])),
     [{"id": "accept-queue-overflow", "severity": "critical",
       "subject": {"port": 8000, "pid": 20, "comm": "gunicorn"}}],
     absent=["syn-flood"])

aq_at = [sock("syn_recv", 8001, "10.9.0.2", 2100 + i, inode=0) for i in range(130)]
case("accept-queue-at-backlog-is-not-syn-flood",
     "the accept queue of port 8001 is at its backlog (128/128: one accepted a moment ago) "
     "and 130 handshakes wait in the SYN queue behind it: accept-queue-overflow, not a flood",
     snapshot(aq_at + [sock("listen", 8001, pid=21, comm="gunicorn", recv_q=128, send_q=128,
                            inode=10)],
              host(namespaces=[namespace(rates={"TcpExt.ListenOverflows": 40,
                                                "TcpExt.SyncookiesSent": 5})])),
     [{"id": "accept-queue-overflow", "subject": {"port": 8001, "pid": 21}}],
     absent=["syn-flood"])

# ---------------------------------------------------------------- resources
case("fd-exhaustion-process",
     "a process at 1,000 of 1,024 fds: critical; the prlimit fix names pid and soft",
     snapshot([], host(processes=[proc(4321, "api", 1000, 1024, 524288)])),
     [{"id": "fd-exhaustion", "severity": "critical", "subject": {"pid": 4321}}])
case("fd-exhaustion-host",
     "file-nr at 92 % of file-max: warning for the host",
     snapshot([], host(files={"allocated": 920000, "free": 0, "file_max": 1000000,
                              "nr_open": 1048576})),
     [{"id": "fd-exhaustion", "severity": "warning", "subject": {"netns": "host"},
       "fix": {"key": "fs.file-max", "netns": "host"}}])
case("fd-leak-stale-tcp-fds",
     "150 fds on TCP sockets gone from every table and shut down both ways: fd-leak warning",
     snapshot([], host(stale=[{"pid": 600, "comm": "worker", "netns": "host",
                               "fds": [{"fd": 10 + i, "inode": 90000 + i, "protocol": "TCP",
                                        "hup": True} for i in range(150)]}])),
     [{"id": "fd-leak", "severity": "warning", "subject": {"pid": 600}}])
case("fd-leak-few-is-info",
     "3 dead TCP fds (hup) in one sample: info (the process may be about to close them)",
     snapshot([], host(stale=[{"pid": 601, "comm": "lab", "netns": "host",
                               "fds": [{"fd": 10 + i, "inode": 91000 + i, "protocol": "TCP",
                                        "hup": True} for i in range(3)]}])),
     [{"id": "fd-leak", "severity": "info", "subject": {"pid": 601}}], status="ok")
case("fd-leak-never-connected-is-not-a-leak",
     "40 TCP fds in no table but never connected (hup False), 5 unchecked (hup None): "
     "no fd-leak",
     snapshot([], host(stale=[{"pid": 602, "comm": "pool", "netns": "host",
                               "fds": [{"fd": 10 + i, "inode": 92000 + i, "protocol": "TCP",
                                        "hup": None if i < 5 else False}
                                       for i in range(45)]}])),
     [], absent=["fd-leak"], status="ok")
case("conntrack-nearly-full",
     "conntrack 250,000 of 262,144 (95 %) and 'table full' in the kernel log: critical",
     snapshot([], host(namespaces=[namespace(ct={
         "loaded": True, "count": 250000, "max": 262144, "buckets": 65536,
         "tcp_timeouts": {"established": 432000}, "stats": {"drop": 1200}, "cpus": 2})],
         kernel_log=[klog("conntrack-full", "nf_conntrack: nf_conntrack: table full, "
                          "dropping packet", 60)])),
     [{"id": "conntrack-exhaustion", "severity": "critical", "subject": {"netns": "host"}}])
case("conntrack-not-loaded",
     "no conntrack module: nothing to exhaust, the rule is checked, no finding",
     snapshot([]), [], absent=["conntrack-exhaustion"], status="ok")
case("tcp-memory-pressure",
     "TCP buffers at 560,000 pages of a 575,796 max and aborts on memory: critical",
     snapshot([], host(namespaces=[namespace(sockstat={"tcp_mem": 560000},
                                             rates={"TcpExt.TCPAbortOnMemory": 3})])),
     [{"id": "tcp-memory-pressure", "severity": "critical"}])
fw2 = [sock("fin_wait2", 80, f"10.4.0.{i % 200}", 3000 + i, inode=0) for i in range(1200)]
case("orphan-pressure-fin-wait2",
     "40,000 orphans of 65,536 (61 %) and 1,200 orphaned FIN_WAIT2: warning",
     snapshot(fw2, host(namespaces=[namespace(sockstat={"tcp_orphan": 40000})])),
     [{"id": "orphan-pressure", "severity": "warning"}])
fw2_small = [sock("fin_wait2", 80, f"10.4.1.{i % 20}", 3000 + i, inode=0, netns="lab1")
             for i in range(60)]
case("orphan-pressure-fin-wait2-relative",
     "netns lab1 with tcp_max_tw_buckets 200 and tcp_fin_timeout 60 holds 60 orphaned "
     "FIN_WAIT2 (timewait mini sockets, 30 % of its buckets): warning for lab1, no orphans "
     "host-wide",
     snapshot(fw2_small, host(namespaces=[namespace("lab1", tun=tunables(
         tcp_max_tw_buckets=200))], global_tun=tunables())),
     [{"id": "orphan-pressure", "severity": "warning", "subject": {"netns": "lab1"}}])
fw2_many = [sock("fin_wait2", 80, f"10.4.0.{i % 200}", 3000 + i, inode=0) for i in range(1200)]
case("orphan-pressure-fin-wait2-below-share",
     "1,200 orphaned FIN_WAIT2 against 65,536 tw buckets (2 %) and few orphans: no pressure",
     snapshot(fw2_many), [], absent=["orphan-pressure"], status="ok")

# ---------------------------------------------------------------- --netns scope
case("netns-scope-per-process",
     "doctor --netns lab1: fd-exhaustion for the lab1 process and for a host process that "
     "owns a lab1 socket; not for a host process outside lab1; file-nr stays host-wide",
     snapshot([sock("established", 9100, "198.18.0.2", 40000, 711, "relay", netns="lab1",
                    inode=9100)],
              host(namespaces=[namespace("lab1")],
                   files={"allocated": 930000, "free": 0, "file_max": 1000000,
                          "nr_open": 1048576},
                   processes=[proc(700, "inlab", 1000, 1024, netns="lab1"),
                              proc(711, "relay", 1000, 1024),
                              proc(722, "hostapp", 1000, 1024)],
                   stale=[{"pid": 722, "comm": "hostapp", "netns": "host",
                           "fds": [{"fd": 10 + i, "inode": 93000 + i, "protocol": "TCP",
                                    "hup": True} for i in range(50)]}]),
              processes=[(711, "relay")]),
     [{"id": "fd-exhaustion", "subject": {"pid": 700}},
      {"id": "fd-exhaustion", "subject": {"pid": 711}},
      {"id": "fd-exhaustion", "severity": "warning",
       "subject": {"netns": "host", "scope": "host-wide"}, "fix": {"netns": "host"}}],
     not_expect=[{"id": "fd-exhaustion", "subject": {"pid": 722}},
                 {"id": "fd-leak", "subject": {"pid": 722}}])
case("conntrack-full-in-netns-fix-on-host",
     "conntrack full in netns lab1: nf_conntrack_max is read-only there, the fix targets "
     "the host; the established timeout is set in lab1",
     snapshot([], host(namespaces=[namespace("lab1", ct={
         "loaded": True, "count": 260000, "max": 262144, "buckets": 65536,
         "tcp_timeouts": {"established": 432000}, "stats": {}, "cpus": 2})])),
     [{"id": "conntrack-exhaustion", "severity": "critical", "subject": {"netns": "lab1"},
       "fix": {"key": "net.netfilter.nf_conntrack_max", "netns": "host"}},
      {"id": "conntrack-exhaustion", "subject": {"netns": "lab1"},
       "fix": {"key": "net.netfilter.nf_conntrack_tcp_timeout_established", "netns": "lab1"}}])
case("timeout-mismatch-aws-nlb-in-netns",
     "doctor --netns lab1 --middlebox aws-nlb: the middlebox applies to lab1, the fix is "
     "lab1's tcp_keepalive_time",
     snapshot([], host(namespaces=[namespace("lab1")])),
     [{"id": "timeout-mismatch", "severity": "warning",
       "subject": {"middlebox": "aws-nlb", "netns": "lab1"},
       "fix": {"key": "net.ipv4.tcp_keepalive_time", "netns": "lab1"}}],
     options={"middleboxes": ["aws-nlb"]})

case("memory-exhaustion-oom",
     "three OOM kills in the last hour: critical",
     snapshot([], host(kernel_log=[klog("oom-kill", f"Out of memory: Killed process {p} (java)",
                                        600 + p, pid=p, comm="java") for p in (1, 2, 3)])),
     [{"id": "memory-exhaustion", "severity": "critical"}])

# ---------------------------------------------------------------- time-wait
tw = [sock("time_wait", 40000 + i, "10.5.0.1", 443, laddr="10.0.0.1", inode=0) for i in range(85)]
tw += [sock("established", 40085 + i, "10.5.0.1", 443, 700, "curl-loop",
            info=tcp_info(), inode=8000 + i) for i in range(5)]
case("time-wait-ephemeral-ports",
     "port range 40000-40099 (100 ports), 90 of them in use to 10.5.0.1:443: critical",
     snapshot(tw, host(namespaces=[namespace(tun=tunables(ip_local_port_range=[40000, 40099]))])),
     [{"id": "time-wait-pressure", "severity": "critical",
       "subject": {"port": 443, "peer": "10.5.0.1:443", "pid": 700}}])
case("time-wait-bucket-overflow",
     "TCPTimeWaitOverflow grew: TIME_WAIT sockets destroyed early -> critical",
     snapshot([], host(namespaces=[namespace(rates={"TcpExt.TCPTimeWaitOverflow": 12},
                                             sockstat={"tcp_tw": 65536})])),
     [{"id": "time-wait-pressure", "severity": "critical", "subject": {"netns": "host"}}])

# ---------------------------------------------------------------- kernel
case("kernel-tuning-syncookies-off",
     "tcp_syncookies=0 and tcp_abort_on_overflow=1: two warnings with sysctl fixes",
     snapshot([], host(namespaces=[namespace(tun=tunables(tcp_syncookies=0,
                                                          tcp_abort_on_overflow=1))])),
     [{"id": "kernel-tuning", "severity": "warning",
       "subject": {"sysctl": "net.ipv4.tcp_syncookies"}},
      {"id": "kernel-tuning", "severity": "warning",
       "subject": {"sysctl": "net.ipv4.tcp_abort_on_overflow"}}])

# ---------------------------------------------------------------- unknown
case("no-host-facts-unknown",
     "a snapshot without host facts: host rules report unknown with the reason, socket "
     "rules still run and find the leak",
     snapshot(few_old, host_facts=None),
     [{"id": "close-wait-leak", "severity": "warning"},
      {"id": "fd-exhaustion", "severity": "unknown"},
      {"id": "conntrack-exhaustion", "severity": "unknown"}], status="warning")
case("unreadable-limits-unknown",
     "limits unreadable (not root): fd-exhaustion unknown, the rest ok",
     snapshot([], host(unavailable={"limits": "permission denied: not root?"})),
     [{"id": "fd-exhaustion", "severity": "unknown"}], status="ok")


if __name__ == "__main__":
    out = os.path.join(HERE, "cases")
    os.makedirs(out, exist_ok=True)
    for name, data in CASES.items():
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    print(f"{len(CASES)} cases written to {out}")
