"""client-power-loss: the client vanishes without a word; the server's socket stays ESTABLISHED."""

from __future__ import annotations

import socket
import time

from .. import tools
from ..scenario import Scenario, wait_until
from ..topo import App

PORT = 8081
IDLE, INTERVAL, COUNT = 2, 1, 3  # keepalive retrofitted by the fix
ESTABLISHED = ["state", "established", "sport", "=", f":{PORT}"]


class ClientPowerLoss(Scenario):
    NAME = "client-power-loss"
    FINDINGS = ("keepalive-off",)
    SUMMARY = "the client loses power (nft drops all, link down): an idle server socket stays ESTABLISHED forever"
    NEEDS = ("nft",)
    app: App
    client: socket.socket

    def build(self) -> None:
        lab = self.lab
        self.say.step("build: srv and cli on one veth link")
        lab.add_netns("srv")
        lab.add_netns("cli")
        srv_ip, _cli_ip = lab.link("srv", "cli")
        self.app = lab.spawn("srv", PORT, "hold")
        self.fact(server_pid=self.app.pid, port=PORT)

        self.say.step("a client connects, says hello, and goes idle")
        self.client = self.connected("cli", srv_ip, PORT, 2.0, "client connects", failed="connect failed: ")
        self.client.sendall(b"hello\n")
        self.client.settimeout(2.0)
        self.check("symptom", "server answers", self.client.recv(16) == b"hi\n")

    def break_(self) -> None:
        self.say.step("break: the client loses power: it drops everything and its link goes down")
        self.lab.nft("cli", """
table inet lab {
  chain in  { type filter hook input  priority 0; policy drop; }
  chain out { type filter hook output priority 0; policy drop; }
}""")
        self.lab.sh(["ip", "-n", self.lab.ns("cli"), "link", "set", "to-srv", "down"])
        self.say.note("2 s of silence ...")
        time.sleep(2.0)

    def diagnose(self) -> None:
        lab = self.lab
        self.say.step("symptom, seen directly: the server still sees an ESTABLISHED peer, with no timer")
        lab.sh(["ss", "-tnoi", *ESTABLISHED], ns="srv", echo=True)
        est = tools.ss_count(lab, "srv", ESTABLISHED, show=False)
        timers = lab.sh(["ss", "-Htno", *ESTABLISHED], ns="srv", show=False).stdout
        self.check("symptom", "server socket ESTABLISHED to a dead peer", est == 1, f"{est} ESTABLISHED")
        self.check("symptom", "no keepalive timer on it", "keepalive" not in timers,
                   "ss -o shows no timer:(keepalive...)")

        report = self.doctor("srv", ["--pid", str(self.app.pid)])
        self.expect(report, "keepalive-off", pid=self.app.pid)

    def fix(self) -> None:
        lab = self.lab
        self.say.step(f"fix: retrofit keepalive onto the running server (idle {IDLE}s, "
                      f"interval {INTERVAL}s, count {COUNT}) — no restart")
        self.result.fixed_by.append(tools.keepalive(lab, self.app.pid, IDLE, INTERVAL, COUNT))
        lab.shrunk["srv: TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT (per socket)"] = f"{IDLE}/{INTERVAL}/{COUNT}"
        lab.sh(["ss", "-tno", *ESTABLISHED], ns="srv", echo=True)

    def verify(self) -> None:
        bound = IDLE + INTERVAL * COUNT
        self.say.step(f"verify: the socket is reset within idle + interval*count = {bound}s")
        gone, took = wait_until(
            lambda: tools.ss_count(self.lab, "srv", ESTABLISHED, show=False) == 0, bound + 3.0)
        self.fact(reset_after_s=round(took, 1))
        self.check("cure", "dead connection closed by keepalive", gone,
                   f"after {took:.1f}s (bound {bound}s + 3s slack)")
        err = self.app.wait_event("conn_error", 2.0)
        self.check("cure", "the server learns of it", err is not None and err.get("errno") == "ETIMEDOUT",
                   f"recv() -> {err.get('errno') if err else 'nothing'}")
