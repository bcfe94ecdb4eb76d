"""conntrack-full: the router's connection table fills; new flows are dropped, old ones work."""

from __future__ import annotations

import socket

from ..scenario import Scenario, connect, errname
from ..topo import App

PORT = 8093
CT_MAX = 48
KEY = "net.netfilter.nf_conntrack_max"

RULES = """
table inet lab {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
    ct state new accept
  }
}"""


class ConntrackFull(Scenario):
    NAME = "conntrack-full"
    FINDINGS = ("conntrack-exhaustion",)
    SUMMARY = ("client - router - server: the router's conntrack table is full; new flows' SYNs are "
               "dropped while tracked flows keep working; raising nf_conntrack_max cures it")
    NEEDS = ("nft", "conntrack")
    srv_ip: str
    app: App
    old: socket.socket  # a flow established before the table fills
    where: str  # where nf_conntrack_max was lowered: "netns" or "host"
    failed: int | None  # the errno of the first connect the full table stopped

    def set_max(self, value: int) -> str:
        """Lower nf_conntrack_max for the router: inside its namespace where the kernel allows
        it, else host-wide (recorded first, restored on every exit path). Returns where."""
        lab = self.lab
        if lab.try_sysctl("rtr", KEY, value) is None:
            lab.shrunk[f"rtr: {KEY}"] = str(value)
            return "netns"
        self.say.note(f"this kernel ({lab.read_sysctl(None, 'kernel.osrelease')}) keeps {KEY} read-only "
                      "outside the initial namespace: the limit is host-wide. It applies to each "
                      "namespace's own count, so the lab lowers it for a few seconds, records the "
                      "original in the state file first, and restores it on every exit path")
        lab.host_sysctl(KEY, value)
        return "host"

    def new_flows(self, n: int, until_refused: bool) -> tuple[int, int | None]:
        """Up to n new flows through the router, held: (how many connected, the errno of
        the first that did not, or None); `until_refused`: no more tries after it."""
        made, refused = 0, None
        with self.lab.inside("cli"):
            for _ in range(n):
                s = connect(self.srv_ip, PORT, timeout=1.0)
                if isinstance(s, int):
                    refused = s if refused is None else refused
                    if until_refused:
                        break
                    continue
                self.hold(s)
                made += 1
        return made, refused

    def old_flow_works(self) -> bool:
        self.old.sendall(b"hello\n")
        return self.old.recv(16) == b"hi\n"

    def build(self) -> None:
        lab = self.lab
        self.say.step("build: cli - rtr - srv; the router tracks every forwarded flow")
        _cli_ip, self.srv_ip = lab.routed()
        lab.nft("rtr", RULES)
        self.app = lab.spawn("srv", PORT, "hold")
        self.fact(server_pid=self.app.pid, port=PORT, host_max_before=int(lab.read_sysctl(None, KEY)))

        self.say.step("an old flow, established before the table fills")
        self.old = self.connected("cli", self.srv_ip, PORT, 2.0, "client connects through the router")
        self.old.settimeout(2.0)
        self.old.sendall(b"hello\n")
        self.old.recv(16)

    def break_(self) -> None:
        self.say.step(f"break: nf_conntrack_max={CT_MAX}, then open flows until the table is full")
        self.cleanup.callback(self.lab.restore_host_sysctls)  # if lowered host-wide
        self.where = self.set_max(CT_MAX)
        self.fact(max_changed_in=self.where)
        made, self.failed = self.new_flows(CT_MAX + 8, until_refused=True)
        self.say.note(f"{made} new flows, then connect() -> "
                      f"{errname(self.failed) if self.failed else 'no error'}")

    def diagnose(self) -> None:
        lab, failed = self.lab, self.failed
        self.say.step("symptom, seen directly")
        lab.sh(["sysctl", "net.netfilter.nf_conntrack_count"], ns="rtr", echo=True)
        count = int(lab.read_sysctl("rtr", "net.netfilter.nf_conntrack_count"))
        stats = lab.sh(["conntrack", "-S"], ns="rtr", echo=True, check=False).stdout
        drops = sum(int(w.split("=")[1]) for w in stats.split() if w.startswith("drop="))
        self.fact(ct_count=count, ct_drops=drops)
        self.check("symptom", "router's table is full", count >= CT_MAX, f"nf_conntrack_count {count} of {CT_MAX}")
        self.check("symptom", "new flows are dropped", failed is not None,
                   f"connect() -> {errname(failed) if failed else 'succeeded'}; conntrack -S drop={drops}")
        self.check("symptom", "the old flow still works", self.old_flow_works())

        report = self.doctor("rtr")
        self.expect(report, "conntrack-exhaustion")

    def fix(self) -> None:
        self.say.step("fix: raise nf_conntrack_max (size it to peak flows x 2; or shorten "
                      "nf_conntrack_tcp_timeout_established)")
        self.say.note(f"not `halfopen fix conntrack-exhaustion`: the doctor's {KEY} fix is for the "
                      "whole host (one value for every namespace on kernels where it is read-only "
                      "in a namespace), and the lab lets `halfopen fix` change only its own "
                      "namespaces; it undoes its own lowering instead"
                      + (": it restores the recorded host value" if self.where == "host" else ""))
        if self.where == "host":
            self.lab.restore_host_sysctls()
        else:
            self.lab.sysctl("rtr", KEY, 65536)
        self.result.fixed_by.append(f"sysctl {KEY}")

    def verify(self) -> None:
        lab = self.lab
        self.say.step("verify")
        ok, _ = self.new_flows(8, until_refused=False)
        self.check("cure", "new flows get through", ok == 8, f"{ok}/8")
        self.check("cure", "the old flow still works", self.old_flow_works())
        lab.restore_host_sysctls()
        self.check("cure", "host-wide limit restored", int(lab.read_sysctl(None, KEY)) ==
                   self.result.facts["host_max_before"], f"{KEY} = {lab.read_sysctl(None, KEY)}")
