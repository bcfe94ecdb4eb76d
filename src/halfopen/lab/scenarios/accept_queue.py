"""accept-queue-overflow: handshakes complete faster than the application accepts them."""

from __future__ import annotations

import socket
import time

from .. import tools
from ..scenario import Ctx, wait_until

NAME = "accept-queue-overflow"
FINDINGS = ("accept-queue-overflow",)
SUMMARY = ("a server accepts one connection every 2 s behind a backlog of 4: the accept queue "
           "overflows (ListenOverflows) — not a SYN flood; the fix is in the application")
PORT = 8091
BACKLOG = 4
BURST = 30


def burst(ctx: Ctx, srv_ip: str, n: int) -> list[socket.socket]:
    """Start n non-blocking connects; return the sockets (left open)."""
    socks = []
    with ctx.lab.inside("cli"):
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((srv_ip, PORT))
            socks.append(s)
    return socks


def run(ctx: Ctx) -> None:
    lab = ctx.lab
    ctx.say.step("build: srv and cli on one veth link")
    lab.add_netns("srv")
    lab.add_netns("cli")
    srv_ip, _ = lab.link("srv", "cli")
    ctx.say.step(f"break: a server that accepts one connection every 2 s, listen(backlog={BACKLOG})")
    app = lab.spawn("srv", PORT, "slow", backlog=BACKLOG)
    ctx.fact(server_pid=app.pid, port=PORT)
    ctx.say.note(f"{BURST} clients connect at once")
    socks = burst(ctx, srv_ip, BURST)
    time.sleep(1.5)  # the first SYN retransmissions (after 1 s) also hit the full queue

    ctx.say.step("symptom, seen directly")
    lab.sh(["ss", "-ltn", "sport", "=", f":{PORT}"], ns="srv", echo=True)
    ctr = tools.nstat(lab, "srv", ["TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop"],
                      show=True)
    listener = lab.sh(["ss", "-Hltn", "sport", "=", f":{PORT}"], ns="srv", show=False).stdout.split()
    queued = int(listener[1]) if len(listener) > 2 else 0
    ctx.fact(listen_overflows=ctr["TcpExtListenOverflows"])
    ctx.check("symptom", "accept queue overflows", ctr["TcpExtListenOverflows"] > 0,
              f"TcpExtListenOverflows {ctr['TcpExtListenOverflows']}")
    ctx.check("symptom", "accept queue full", queued > BACKLOG,
              f"Recv-Q {queued} > backlog {BACKLOG}; while it is full the kernel drops SYNs and "
              "the clients' final ACKs (the client may believe it is connected)")
    ctx.check("symptom", "not a SYN-queue problem", ctr["TcpExtTCPReqQFullDrop"] == 0,
              f"TcpExtTCPReqQFullDrop {ctr['TcpExtTCPReqQFullDrop']}")

    report = ctx.doctor("srv")
    ctx.expect(report, "accept-queue-overflow", port=PORT)
    ctx.refute(report, "syn-flood", "every SYN came from a real client that completes the handshake")

    ctx.say.step("fix (in the application): accept in a loop as fast as connections come, "
                 "and listen() with a larger backlog")
    ctx.say.note("the lab's server does: listen(fd, 1024) again on the listening socket, then "
                 "accept() until EAGAIN; the kernel caps the backlog at net.core.somaxconn")
    app.ask("fast", "fast")
    ctx.result.fixed_by.append("application: accept faster, listen(1024)")

    ctx.say.step("verify: the stuck clients get in on the next SYN-ACK retry, a new burst at once")
    drained, took = wait_until(lambda: tools.ss_count(lab, "srv", ["state", "syn-recv", "sport", "=",
                                                                   f":{PORT}"], show=False) == 0, 8.0)
    ctx.check("cure", "the stuck handshakes completed and were accepted", drained, f"after {took:.1f}s")
    before = tools.nstat(lab, "srv", ["TcpExtListenOverflows"], show=False)["TcpExtListenOverflows"]
    more = burst(ctx, srv_ip, BURST)
    ok, took2 = wait_until(lambda: tools.ss_count(lab, "cli", ["state", "established", "dport", "=",
                                                               f":{PORT}"], show=False) >= 2 * BURST, 3.0)
    after = tools.nstat(lab, "srv", ["TcpExtListenOverflows"])["TcpExtListenOverflows"]
    ctx.check("cure", f"a new burst of {BURST} connects at once", ok, f"in {took2:.1f}s")
    ctx.check("cure", "no new overflows", after == before, f"TcpExtListenOverflows {before} -> {after}")
    for s in socks + more:
        s.close()
