"""accept-queue-overflow: handshakes complete faster than the application accepts them."""

from __future__ import annotations

import socket
import time

from .. import tools
from ..scenario import Scenario, wait_until
from ..topo import App

PORT = 8091
BACKLOG = 4
BURST = 30


class AcceptQueue(Scenario):
    NAME = "accept-queue-overflow"
    FINDINGS = ("accept-queue-overflow",)
    SUMMARY = ("a server accepts one connection every 2 s behind a backlog of 4: the accept queue "
               "overflows (ListenOverflows) — not a SYN flood; the fix is in the application")
    srv_ip: str
    app: App

    def burst(self, n: int) -> list[socket.socket]:
        """Start n non-blocking connects; return the sockets (held open)."""
        socks = []
        with self.lab.inside("cli"):
            for _ in range(n):
                s = self.hold(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                s.setblocking(False)
                s.connect_ex((self.srv_ip, PORT))
                socks.append(s)
        return socks

    def build(self) -> None:
        self.say.step("build: srv and cli on one veth link")
        self.lab.add_netns("srv")
        self.lab.add_netns("cli")
        self.srv_ip, _ = self.lab.link("srv", "cli")

    def break_(self) -> None:
        self.say.step(f"break: a server that accepts one connection every 2 s, listen(backlog={BACKLOG})")
        self.app = self.lab.spawn("srv", PORT, "slow", backlog=BACKLOG)
        self.fact(server_pid=self.app.pid, port=PORT)
        self.say.note(f"{BURST} clients connect at once")
        self.burst(BURST)
        time.sleep(1.5)  # the first SYN retransmissions (after 1 s) also hit the full queue

    def diagnose(self) -> None:
        lab = self.lab
        self.say.step("symptom, seen directly")
        lab.sh(["ss", "-ltn", "sport", "=", f":{PORT}"], ns="srv", echo=True)
        ctr = tools.nstat(lab, "srv", ["TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop"],
                          show=True)
        listener = lab.sh(["ss", "-Hltn", "sport", "=", f":{PORT}"], ns="srv", show=False).stdout.split()
        queued = int(listener[1]) if len(listener) > 2 else 0
        self.fact(listen_overflows=ctr["TcpExtListenOverflows"])
        self.check("symptom", "accept queue overflows", ctr["TcpExtListenOverflows"] > 0,
                   f"TcpExtListenOverflows {ctr['TcpExtListenOverflows']}")
        self.check("symptom", "accept queue full", queued > BACKLOG,
                   f"Recv-Q {queued} > backlog {BACKLOG}; while it is full the kernel drops SYNs and "
                   "the clients' final ACKs (the client may believe it is connected)")
        self.check("symptom", "not a SYN-queue problem", ctr["TcpExtTCPReqQFullDrop"] == 0,
                   f"TcpExtTCPReqQFullDrop {ctr['TcpExtTCPReqQFullDrop']}")

        report = self.doctor("srv")
        self.expect(report, "accept-queue-overflow", port=PORT)
        self.refute(report, "syn-flood", "every SYN came from a real client that completes the handshake")

    def fix(self) -> None:
        self.say.step("fix (in the application): accept in a loop as fast as connections come, "
                      "and listen() with a larger backlog")
        self.say.note("the lab's server does: listen(fd, 1024) again on the listening socket, then "
                      "accept() until EAGAIN; the kernel caps the backlog at net.core.somaxconn")
        self.app.ask("fast", "fast")
        self.result.fixed_by.append("application: accept faster, listen(1024)")

    def verify(self) -> None:
        lab = self.lab
        self.say.step("verify: the stuck clients get in on the next SYN-ACK retry, a new burst at once")
        drained, took = wait_until(lambda: tools.ss_count(lab, "srv", ["state", "syn-recv", "sport", "=",
                                                                       f":{PORT}"], show=False) == 0, 8.0)
        self.check("cure", "the stuck handshakes completed and were accepted", drained, f"after {took:.1f}s")
        before = tools.nstat(lab, "srv", ["TcpExtListenOverflows"], show=False)["TcpExtListenOverflows"]
        self.burst(BURST)
        ok, took2 = wait_until(lambda: tools.ss_count(lab, "cli", ["state", "established", "dport", "=",
                                                                   f":{PORT}"], show=False) >= 2 * BURST, 3.0)
        after = tools.nstat(lab, "srv", ["TcpExtListenOverflows"])["TcpExtListenOverflows"]
        self.check("cure", f"a new burst of {BURST} connects at once", ok, f"in {took2:.1f}s")
        self.check("cure", "no new overflows", after == before, f"TcpExtListenOverflows {before} -> {after}")
