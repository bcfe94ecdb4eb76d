"""orphans: closed sockets the kernel still owns: FIN_WAIT1 behind unread data, FIN_WAIT2."""

from __future__ import annotations

from .. import tools
from ..scenario import Scenario, connect, errname, wait_until

PORT_STUCK = 8094   # never reads: our FIN waits behind unsent data -> FIN_WAIT1
PORT_OPEN = 8095    # reads to EOF, never closes: -> FIN_WAIT2 (CLOSE_WAIT on the server)
PORT_AFTER = 8096   # the same as PORT_OPEN, after the fix
N = 40            # FIN_WAIT1 orphans
# With tcp_fin_timeout <= 60 (the default) an orphan whose FIN was ACKed becomes a timewait
# mini socket in FIN_WAIT2, counted against the namespace's tcp_max_tw_buckets; the doctor
# warns from 25 % of that (at least 16). Lowered inside cli (a per-namespace sysctl), so a
# bounded number of sockets reaches it: 64 of 128 (threshold 32), below the 80 % at which
# the buckets themselves are time-wait-pressure, and none dropped for a full table.
TW_BUCKETS = 128
N_FW2 = 64
FIN_TIMEOUT = 3   # shrunk for the verification only: the doctor's fix sets 30 s


class Orphans(Scenario):
    NAME = "orphans"
    FINDINGS = ("orphan-pressure",)
    SUMMARY = ("a client closes with data its peer never reads (FIN_WAIT1) or towards a peer that "
               "never closes (FIN_WAIT2): orphans pile up; tcp_orphan_retries / tcp_fin_timeout")
    srv_ip: str
    fin_timeout: str  # net.ipv4.tcp_fin_timeout as the doctor's fix left it

    def orphan(self, port: int, n: int, fill: bool) -> int:
        made = 0
        with self.lab.inside("cli"):
            for _ in range(n):
                s = connect(self.srv_ip, port, timeout=5.0)
                if isinstance(s, int):
                    self.say.note(f"connect :{port}: {errname(s)}")
                    break
                if fill:
                    s.setblocking(False)
                    try:
                        while True:
                            s.send(b"x" * 65536)
                    except BlockingIOError:
                        pass
                s.close()  # the process lets go; the kernel keeps the socket: an orphan
                made += 1
        return made

    def count(self, state: str, port: int, show: bool = True) -> int:
        return tools.ss_count(self.lab, "cli", ["state", state, "dport", "=", f":{port}"], show=show)

    def build(self) -> None:
        lab = self.lab
        self.say.step("build: srv and cli on one veth link")
        lab.add_netns("srv")
        lab.add_netns("cli")
        self.srv_ip, _ = lab.link("srv", "cli")
        lab.sysctl("cli", "net.ipv4.tcp_max_tw_buckets", TW_BUCKETS, shrink=True)
        stuck = lab.spawn("srv", PORT_STUCK, "never-read", rcvbuf=4096)
        leak = lab.spawn("srv", PORT_OPEN, "leak", nofile=4096)
        self.fact(server_pids=[stuck.pid, leak.pid])

    def break_(self) -> None:
        self.say.step(f"break: {N} clients write more than the peer will read, then close(); "
                      f"{N_FW2} more close towards a peer that never closes")
        self.orphan(PORT_STUCK, N, fill=True)
        self.orphan(PORT_OPEN, N_FW2, fill=False)
        wait_until(lambda: self.count("fin-wait-2", PORT_OPEN, show=False) >= N_FW2 - 5, 5.0)

    def diagnose(self) -> None:
        lab = self.lab
        self.say.step("symptom, seen directly: sockets no process owns")
        fw1 = self.count("fin-wait-1", PORT_STUCK)
        fw2 = self.count("fin-wait-2", PORT_OPEN)
        lab.sh(["cat", "/proc/net/sockstat"], ns="cli", echo=True)
        self.fact(fin_wait1=fw1, fin_wait2=fw2)
        self.check("symptom", "FIN_WAIT1 orphans (FIN stuck behind unread data, zero window)", fw1 >= N - 2,
                   f"{fw1}")
        self.check("symptom", "FIN_WAIT2 orphans (peer ACKed our FIN, never sends its own)",
                   fw2 >= TW_BUCKETS // 4, f"{fw2} of tcp_max_tw_buckets {TW_BUCKETS}, the limit that "
                   "holds them (tcp_fin_timeout 60: timewait mini sockets in FIN_WAIT2)")
        lab.sh(["ss", "-tno", "state", "fin-wait-1"], ns="cli", echo=True)

        report = self.doctor("cli")
        self.expect(report, "orphan-pressure", netns=lab.ns("cli"))

    def fix(self) -> None:
        lab = self.lab
        self.say.step("fix for the future: the doctor's own fix, a shorter FIN_WAIT2 timeout in cli")
        self.halfopen_fix("cli", "orphan-pressure")
        self.fin_timeout = fin = lab.read_sysctl("cli", "net.ipv4.tcp_fin_timeout")
        self.check("cure", "tcp_fin_timeout lowered in the client's namespace", int(fin) < 60,
                   f"net.ipv4.tcp_fin_timeout = {fin}")
        self.say.step("fix now: destroy the orphans (SOCK_DESTROY sends RST, frees their memory)")
        self.result.fixed_by.append(tools.kill(lab, "cli", ["state", "fin-wait-1"]))
        tools.kill(lab, "cli", ["state", "fin-wait-2"])

    def verify(self) -> None:
        self.shrink_for_verify()
        self.say.step("verify")
        fw1_after = self.count("fin-wait-1", PORT_STUCK)
        fw2_after = self.count("fin-wait-2", PORT_OPEN)
        self.check("cure", "the orphans are gone", fw1_after == 0 and fw2_after == 0,
                   f"{fw1_after} FIN_WAIT1, {fw2_after} FIN_WAIT2 left")
        self.lab.spawn("srv", PORT_AFTER, "leak")
        made = self.orphan(PORT_AFTER, N, fill=False)
        # the closes finish asynchronously: see the orphans arrive before timing their exit,
        # or a count taken too early reads 0 and the doctor then meets them
        wait_until(lambda: self.count("fin-wait-2", PORT_AFTER, show=False) > 0, 3.0, 0.1)
        gone2, t2 = wait_until(lambda: self.count("fin-wait-2", PORT_AFTER, show=False) == 0,
                               FIN_TIMEOUT + 5.0, 0.5)
        self.check("cure", f"new FIN_WAIT2 orphans leave within tcp_fin_timeout={FIN_TIMEOUT}s",
                   gone2 and made == N, f"{made} made, gone after {t2:.1f}s")
        again = self.doctor("cli")
        self.refute(again, "orphan-pressure", "after the fix")
        self.say.note("the real fix is in the peers: read what you are sent, and close() after EOF")

    def shrink_for_verify(self) -> None:
        """The fix's timers, too long to watch, shrunk to lab speed (and said so)."""
        lab = self.lab
        self.say.step(f"verify at lab speed: tcp_fin_timeout {FIN_TIMEOUT}s instead of the fix's "
                      f"{self.fin_timeout}s, and fewer retries for orphans (advice, not one of the "
                      "doctor's automatic fixes)")
        lab.sysctl("cli", "net.ipv4.tcp_fin_timeout", FIN_TIMEOUT, shrink=True)
        lab.sysctl("cli", "net.ipv4.tcp_orphan_retries", 1, shrink=True)
        self.say.note("set by hand: the doctor fixes tcp_fin_timeout to 30 s (applied above by halfopen "
                      f"fix), too long to watch here, so the lab shrinks it to {FIN_TIMEOUT}s; "
                      "tcp_orphan_retries is advice the doctor does not apply")
        self.say.note("tcp_orphan_retries bounds the retransmissions of an orphan whose peer stopped "
                      "answering (0 means 8); tcp_fin_timeout bounds FIN_WAIT2 for orphans closed from "
                      "now on. An orphan whose peer answers zero-window probes is not bounded by either: "
                      "only tcp_max_orphans, memory pressure, or a kill ends it")
