"""middlebox-timeout: a router forgets an idle flow and silently drops its packets."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

from ...diagnose.deadpeer import MIN_RETRANS
from .. import tools
from ..scenario import Scenario, wait_until
from ..topo import App

PORT = 8082
CT_TIMEOUT = 8  # router's nf_conntrack_tcp_timeout_established: issue 22's 8 s firewall
IDLE_FOR = CT_TIMEOUT + 2
VARIANT_CONNS = 2
TRACE_S = IDLE_FOR + 8.0  # the variant's doctor --trace: the connections, the idle gap, the resets

RULES = """
table inet lab {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct state new tcp flags & (syn|ack) == syn accept
    ct state invalid counter %s
  }
}"""


def _keepalive_cure(report: dict, pid: int) -> tuple[int, int, int] | None:
    """(idle, interval, count) of the keepalive fix the doctor proposed for `pid`'s dead peers."""
    for f in report.get("findings", []):
        if f.get("id") == "dead-peer" and f.get("subject", {}).get("pid") == pid:
            for fix in f.get("fixes", []):
                p = fix.get("params") or {}
                if fix.get("action") == "keepalive":
                    return p["idle"], p["interval"], p["count"]
    return None


def received(sock: socket.socket, timeout: float) -> bytes:
    """What arrives on `sock` within `timeout` s (b"" when nothing does)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(64)
    except socket.timeout:
        return b""


class MiddleboxTimeout(Scenario):
    NAME = "middlebox-timeout"
    FINDINGS = ("timeout-mismatch", "dead-peer")
    SUMMARY = ("client - router - server: the router's conntrack forgets an idle flow and drops its "
               "packets; the doctor's keepalive, inside the router timeout, keeps it alive; RST on "
               "expiry is kinder")
    NEEDS = ("nft", "conntrack")
    srv_ip: str
    app: App
    first: socket.socket  # the connection the router forgets
    cure: tuple[int, int, int] | None  # the doctor's keepalive: idle, interval, count
    second: socket.socket  # the same idle pattern, with the doctor's keepalive

    def hello(self, port: int, check: str = "client connects through the router",
              phase: str = "symptom") -> socket.socket:
        s = self.connected("cli", self.srv_ip, port, 2.0, check, phase)
        s.sendall(b"hello\n")
        s.settimeout(2.0)
        s.recv(16)
        return s

    def backoff(self) -> int:
        """The server socket's retransmission backoff (icsk_backoff, `ss -i` "backoff:N")."""
        out = self.lab.sh(["ss", "-tnoi", "state", "established", "sport", "=", f":{PORT}"], ns="srv",
                          check=False, show=False, echo=False).stdout
        m = re.search(r"\bbackoff:(\d+)", out)
        return int(m.group(1)) if m else 0

    def ct_entries(self, show: bool = True) -> int:
        out = self.lab.sh(["conntrack", "-L", "-p", "tcp", "--dport", str(PORT)], ns="rtr",
                          check=False, show=show, echo=show).stdout
        return sum(1 for line in out.splitlines() if "ESTABLISHED" in line)

    def build(self) -> None:
        lab = self.lab
        self.say.step("build: cli - rtr - srv; the router tracks connections and forwards only known flows")
        _cli_ip, self.srv_ip = lab.routed()
        lab.nft("rtr", RULES % "drop")
        lab.sysctl("rtr", "net.netfilter.nf_conntrack_tcp_timeout_established", CT_TIMEOUT, shrink=True)
        lab.sysctl("rtr", "net.netfilter.nf_conntrack_tcp_loose", 0)
        self.say.note("tcp_loose=0: a mid-stream packet of a flow the router forgot is INVALID, not a new flow")
        self.app = lab.spawn("srv", PORT, "hold")
        self.fact(server_pid=self.app.pid, port=PORT, router_timeout=CT_TIMEOUT)

        self.say.step("a client connects through the router and goes idle")
        self.first = self.hello(PORT)
        self.ct_entries()
        self.say.note(f"idle for {IDLE_FOR}s, longer than the router's {CT_TIMEOUT}s timeout ...")
        time.sleep(IDLE_FOR)

    def break_(self) -> None:
        self.say.step("break: the router forgot the flow; the server writes")
        left = self.ct_entries()
        self.check("symptom", "router has forgotten the idle flow", left == 0, f"{left} conntrack entries")
        self.app.ask("write news", "wrote")

    def diagnose(self) -> None:
        lab, app = self.lab, self.app
        got = received(self.first, 1.5)
        self.check("symptom", "the server's data never arrives", got == b"", repr(got) if got else "recv timed out")
        # dead-peer asks for MIN_RETRANS backoffs (200 ms, 400 ms, 800 ms: about 1.4 s after the
        # write); on a busy machine the doctor may otherwise look before the third one
        wait_until(lambda: self.backoff() >= MIN_RETRANS, 15)
        lab.sh(["ss", "-tnoi", "state", "established", "sport", "=", f":{PORT}"], ns="srv", echo=True)
        lab.sh(["nft", "list", "chain", "inet", "lab", "forward"], ns="rtr", echo=True)

        report = self.doctor("srv", ["--pid", str(app.pid), "--middlebox", str(CT_TIMEOUT)])
        self.say.note(f"--middlebox {CT_TIMEOUT}: a middlebox with a {CT_TIMEOUT}s idle timeout on the "
                      f"path, declared for the namespace checked with --netns")
        self.expect(report, "timeout-mismatch", netns=lab.ns("srv"))
        self.expect(report, "dead-peer", pid=app.pid)
        self.cure = _keepalive_cure(report, app.pid)
        router = self.doctor("rtr")
        self.expect(router, "timeout-mismatch", middlebox="conntrack")
        self.first.close()
        tools.kill(lab, "srv", ["state", "established", "sport", "=", f":{PORT}"])
        self.say.note("(the half-open connection is gone now; next, the same idle pattern with the fix)")

    def fix(self) -> None:
        if self.cure is None:
            self.stop("cure", "the doctor proposes a keepalive for the server", "none proposed")
        idle, interval, count = self.cure
        self.check("cure", f"the proposed keepalive ends inside the router's {CT_TIMEOUT}s",
                   idle + interval * count < CT_TIMEOUT, f"{idle}s + {interval}s x {count}")
        self.say.step(f"fix: the doctor's keepalive ({idle}s/{interval}s x{count}: first probe and a "
                      f"dead peer's reset inside {CT_TIMEOUT}s), retrofitted onto the server")
        self.second = self.hello(PORT)
        self.result.fixed_by.append(tools.keepalive(self.lab, self.app.pid, idle, interval, count))
        self.lab.shrunk["srv: TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT (per socket)"] = f"{idle}/{interval}/{count}"
        self.say.note(f"idle for {IDLE_FOR}s again ...")
        time.sleep(IDLE_FOR)

    def verify(self) -> None:
        self.say.step("verify: the same idle gap, and the flow survives")
        kept = self.ct_entries()
        self.check("cure", "router still tracks the flow (keepalive probes refresh it)", kept == 1,
                   f"{kept} conntrack entries")
        self.app.ask("write news", "wrote")
        got = received(self.second, 2.0)
        self.check("cure", "the server's data arrives after the idle gap", got == b"news\n", repr(got))
        self.second.close()
        self.rst_variant()

    def rst_variant(self) -> None:
        """The same forgotten flow, answered with RST by the router: the server learns at once."""
        lab = self.lab
        self.say.step("variant: the router answers a forgotten flow with RST instead of dropping it")
        lab.sh(["nft", "flush", "ruleset"], ns="rtr")
        lab.nft("rtr", RULES % "reject with tcp reset")
        app = lab.spawn("srv", PORT + 1, "hold")
        # the doctor traces from before the connections (the lookup that names their owner
        # also reads when they last carried data: the idle time before each reset)
        words = ["doctor", "--json", "--trace", str(TRACE_S), *tools.doctor_words(lab),
                 "--pid", str(app.pid), "--port", str(PORT + 1)]
        with tools.Traced(lab, "srv", words) as traced:
            for _ in range(VARIANT_CONNS):  # two: one reset after idle could be anything
                self.hello(PORT + 1, "variant: client connects", phase="cure")
            self.say.note(f"idle for {IDLE_FOR}s without keepalive ...")
            time.sleep(IDLE_FOR)
            t0 = time.monotonic()
            app.send("write news")
            err = app.wait_event("conn_error", 3.0)
            took = time.monotonic() - t0
        self.check("cure", "variant: the server learns at once (RST from the router)",
                   err is not None and err.get("errno") == "ECONNRESET",
                   f"{err.get('errno') if err else 'nothing'} after {took:.1f}s")
        self.rst_variant_traced(traced.json(), app.pid)

    def rst_variant_traced(self, doc: dict[str, Any], pid: int) -> None:
        """What the doctor's trace saw of the variant's resets, and what is left."""
        rows = [o for o in doc.get("trace", {}).get("owners", []) if o.get("pid") == pid]
        resets_got = rows[0]["resets_received"] if rows else 0
        named = [f for f in doc.get("findings", []) if f.get("id") == "timeout-mismatch"
                 and any(e.get("what") == "idle_resets_received" for e in f.get("evidence", []))]
        self.fact(trace_resets_received=resets_got, trace_middlebox_named=bool(named))
        self.check("cure", "variant: the trace shows the resets the server received", resets_got == VARIANT_CONNS,
                   f"doctor --trace {TRACE_S:g}: {resets_got} resets received by pid {pid}")
        detail = named[0].get("title", "") if named else "no timeout-mismatch with idle_resets_received"
        self.check("cure", "variant: the doctor names the middlebox from the resets after idle", bool(named),
                   detail)
        ok, _ = wait_until(lambda: tools.ss_count(self.lab, "srv", ["state", "established", "sport", "=",
                                                                     f":{PORT + 1}"], show=False) == 0, 2.0)
        self.check("cure", "variant: no half-open socket left on the server", ok)
        self.say.note("A silent drop leaves both ends half-open until a write times out (tcp_retries2, "
                      "~15 min by default); an RST ends it in one round trip. Keepalive below the "
                      "middlebox's idle timeout avoids both.")
