"""syn-flood: spoofed SYNs fill a small SYN queue; legitimate clients cannot connect."""

from __future__ import annotations

import shlex
import subprocess
import time

from .. import tools
from ..scenario import Scenario, connect, errname

PORT = 8090
BACKLOG = 128  # the doctor names a listener whose SYN queue is full (SYN_RECV >= backlog) and drops or cookies grow
SPOOFED = ("198.19.7.1", "198.19.7.2", "198.19.8.1", "198.19.9.1")  # all inside 198.18.0.0/15
INTERVAL_US = 4000  # per hping3: 250 SYN/s each, 1000 SYN/s in all
MAX_PACKETS = 15000  # per hping3: bounds the flood to 60 s even if the lab were to hang
TRIES = 8


def _stop(flood: subprocess.Popen) -> None:
    flood.kill()
    flood.wait(timeout=5)


class SynFlood(Scenario):
    NAME = "syn-flood"
    FINDINGS = ("syn-flood",)
    SUMMARY = ("an attacker sends SYNs from spoofed 198.19.x addresses at a listener with a small "
               "backlog and syncookies off; legitimate connects fail until syncookies are on")
    NEEDS = ("hping3",)
    srv_ip: str
    floods: list[subprocess.Popen]  # one hping3 per spoofed source

    def legit(self) -> tuple[int, list[str]]:
        ok, errs = 0, []
        with self.lab.inside("cli"):
            for _ in range(TRIES):
                s = connect(self.srv_ip, PORT, timeout=1.0)
                if isinstance(s, int):
                    errs.append(errname(s))
                else:
                    ok += 1
                    s.close()
        return ok, errs

    def build(self) -> None:
        lab = self.lab
        self.say.step("build: srv with two links: one to a legitimate client, one to an attacker")
        for role in ("srv", "cli", "atk"):
            lab.add_netns(role)
        self.srv_ip, _cli = lab.link("srv", "cli")
        srv2, atk_ip = lab.link("srv", "atk")
        lab.route("atk", srv2)
        lab.route("srv", atk_ip, "198.19.0.0/16")
        self.say.note("SYN-ACKs to the spoofed sources go to the attacker's host, which drops them: "
                      "nobody answers, so each SYN_RECV waits out its SYN-ACK retries")
        for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.to-atk.rp_filter"):
            lab.sysctl("srv", key, 0)
        lab.sysctl("srv", "net.ipv4.tcp_syncookies", 0)
        app = lab.spawn("srv", PORT, "drain", backlog=BACKLOG)
        self.fact(server_pid=app.pid, port=PORT)

        ok0, _ = self.legit()
        self.say.note(f"before the flood: {ok0}/{TRIES} legitimate connects succeed")

    def break_(self) -> None:
        lab = self.lab
        self.say.step(f"break: flood from {len(SPOOFED)} spoofed sources "
                      f"({len(SPOOFED) * 1_000_000 // INTERVAL_US} SYN/s)")
        self.floods = []
        for src in SPOOFED:
            argv = ["hping3", "-q", "-S", "-p", str(PORT), "-a", src, "-I", "to-srv", "-i", f"u{INTERVAL_US}",
                    "-c", str(MAX_PACKETS), self.srv_ip]
            full = ["ip", "netns", "exec", lab.ns("atk"), *argv]
            lab.say.cmd(shlex.join(full) + " &")
            p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
            lab.record.add_pid(p.pid)
            self.cleanup.callback(_stop, p)
            self.floods.append(p)

    def diagnose(self) -> None:
        lab = self.lab
        time.sleep(1.0)
        self.say.step("symptom, seen directly")
        before = tools.nstat(lab, "srv", ["TcpExtListenDrops", "TcpExtTCPReqQFullDrop"], show=False)
        ok1, errs = self.legit()
        recv = tools.ss_count(lab, "srv", ["state", "syn-recv", "sport", "=", f":{PORT}"])
        drops = tools.nstat(lab, "srv", ["TcpExtListenDrops", "TcpExtTCPReqQFullDrop",
                                         "TcpExtSyncookiesSent"])
        lab.sh(["ss", "-ltn", "sport", "=", f":{PORT}"], ns="srv", echo=True)
        self.fact(syn_recv=recv, legit_ok_during_flood=ok1)
        self.check("symptom", "SYN queue full of spoofed half-open entries", recv >= BACKLOG // 2,
                   f"{recv} SYN_RECV on :{PORT} (backlog {BACKLOG})")
        self.check("symptom", "legitimate connects fail", ok1 <= TRIES // 4,
                   f"{ok1}/{TRIES} succeed; errors {sorted(set(errs))}")
        self.check("symptom", "the kernel drops SYNs",
                   drops["TcpExtTCPReqQFullDrop"] > before["TcpExtTCPReqQFullDrop"],
                   f"TcpExtTCPReqQFullDrop {before['TcpExtTCPReqQFullDrop']} -> {drops['TcpExtTCPReqQFullDrop']}")

        report = self.doctor("srv")
        self.expect(report, "syn-flood", port=PORT)

    def fix(self) -> None:
        self.say.step("fix: the doctor's own fix, SYN cookies on (the flood goes on)")
        self.halfopen_fix("srv", "syn-flood")
        cookies_on = self.lab.read_sysctl("srv", "net.ipv4.tcp_syncookies")
        self.check("cure", "tcp_syncookies is 1 in the server's namespace", cookies_on == "1",
                   f"net.ipv4.tcp_syncookies = {cookies_on}")
        self.say.note("a larger backlog (listen(n) and net.ipv4.tcp_max_syn_backlog) buys time too, "
                      "but only cookies keep no state per spoofed SYN")

    def verify(self) -> None:
        self.say.step("verify: legitimate connects during the same flood")
        alive = sum(p.poll() is None for p in self.floods)
        ok2, errs2 = self.legit()
        cookies = tools.nstat(self.lab, "srv", ["TcpExtSyncookiesSent", "TcpExtSyncookiesRecv"])
        self.fact(legit_ok_after_fix=ok2)
        self.check("cure", "the flood is still running", alive == len(self.floods), f"{alive} hping3 running")
        self.check("cure", "legitimate connects succeed", ok2 == TRIES,
                   f"{ok2}/{TRIES}" + (f"; errors {sorted(set(errs2))}" if errs2 else ""))
        self.check("cure", "they got in by SYN cookie", cookies["TcpExtSyncookiesRecv"] >= ok2 > 0,
                   f"SyncookiesSent {cookies['TcpExtSyncookiesSent']}, "
                   f"SyncookiesRecv {cookies['TcpExtSyncookiesRecv']}")
