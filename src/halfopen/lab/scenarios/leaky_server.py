"""leaky-server: a server that never closes; clients close -> CLOSE_WAIT, fds run out."""

from __future__ import annotations

import re
import time
from typing import Any

from .. import tools
from ..scenario import Scenario, connect, errname, wait_until
from ..topo import App

PORT = 8080
NOFILE = 64
CLIENTS = 60
TRACE_S = 4.0  # the doctor's trace window, begun before the clients close


class LeakyServer(Scenario):
    NAME = "leaky-server"
    FINDINGS = ("close-wait-leak", "fd-exhaustion")
    SUMMARY = "a server reads EOF but never calls close(): CLOSE_WAIT piles up until fds run out"
    srv_ip: str
    app: App
    accept_error: dict[str, Any] | None  # the server's first failed accept()
    traced: tools.Traced  # the doctor's trace while the clients closed
    closed_at: float  # time.monotonic() when the last client closed
    fds: int  # socket fds the server holds, before the fix

    def owned(self, state: str, show: bool = True) -> int:
        out = self.lab.sh(["ss", "-Htanp", "state", state], ns="srv", show=show).stdout
        return len(re.findall(rf"pid={self.app.pid},", out))

    def build(self) -> None:
        self.say.step("build: two hosts, srv and cli, on one veth link")
        self.lab.add_netns("srv")
        self.lab.add_netns("cli")
        self.srv_ip, _cli_ip = self.lab.link("srv", "cli")

    def break_(self) -> None:
        lab = self.lab
        self.say.step(f"break: a server that never calls close(), soft fd limit {NOFILE}")
        self.app = app = lab.spawn("srv", PORT, "leak", nofile=NOFILE)
        self.say.note(f"same as: prlimit --pid {app.pid} --nofile={NOFILE}:")
        self.fact(server_pid=app.pid, port=PORT)
        self.say.note(f"{CLIENTS} clients connect, then close (each sends FIN)")
        socks = []
        with lab.inside("cli"):
            for _ in range(CLIENTS):
                s = connect(self.srv_ip, PORT, timeout=2.0)
                if isinstance(s, int):
                    self.say.note(f"connect: {errname(s)}")
                    break
                socks.append(self.hold(s))
        self.accept_error = app.wait_event("accept_error", 5.0)
        self.say.note("the doctor traces the kernel's events while the clients close (the strace check, "
                      "without ptrace)")
        words = ["doctor", "--json", "--trace", str(TRACE_S), *tools.doctor_words(lab),
                 "--pid", str(app.pid), "--port", str(PORT)]
        with tools.Traced(lab, "srv", words) as self.traced:
            for s in socks:
                s.close()
            self.closed_at = time.monotonic()
            wait_until(lambda: self.owned("close-wait", show=False) >= len(socks) - 12, 5.0)

    def diagnose(self) -> None:
        app = self.app
        self.say.step("symptom, seen directly")
        cw = self.owned("close-wait")
        self.fds = tools.socket_fds(app.pid)
        self.fact(close_wait_before=cw, socket_fds_before=self.fds)
        self.check("symptom", "server holds CLOSE_WAIT sockets", cw >= 40,
                   f"{cw} CLOSE_WAIT owned by pid {app.pid} (ss -tanp state close-wait)")
        self.check("symptom", "server near its fd limit", self.fds >= NOFILE - 10,
                   f"{self.fds} socket fds, soft limit {NOFILE}" +
                   (f"; accept() failed with {self.accept_error['errno']}" if self.accept_error else ""))
        rows = [o for o in self.traced.json().get("trace", {}).get("owners", []) if o.get("pid") == app.pid]
        fins = rows[0]["fins_received"] if rows else 0
        closes = rows[0]["closes_called"] if rows else None
        self.fact(trace_fins_received=fins, trace_closes_called=closes)
        self.check("symptom", "the trace: FIN received on every CLOSE_WAIT socket, close() called on none",
                   fins == cw and closes == 0,
                   f"doctor --trace {TRACE_S:g}: received FIN on {fins} connections, called close() on "
                   f"{closes}; {cw} in CLOSE_WAIT")
        self.lab.sh(["grep", "Max open files", f"/proc/{app.pid}/limits"], echo=True)

        # a CLOSE_WAIT socket's age is the time since the peer's FIN (tcp_info last_ack_recv);
        # the doctor counts one as stuck from --min-age on, and reads the sockets at the start
        # of its window: let the youngest grow older than that first
        wait = self.closed_at + tools.DOCTOR_MIN_AGE + 0.5 - time.monotonic()
        if wait > 0:
            self.say.note(f"waiting {wait:.1f}s: the youngest CLOSE_WAIT must be older than the "
                          f"doctor's --min-age {tools.DOCTOR_MIN_AGE}s to count as stuck")
            time.sleep(wait)
        report = self.doctor("srv", ["--pid", str(app.pid)])
        self.expect(report, "close-wait-leak", pid=app.pid)
        self.expect(report, "fd-exhaustion", pid=app.pid)

    def fix(self) -> None:
        self.say.step("fix: the real fix is close() in the application; halfopen kill frees the TCP state now")
        how = tools.kill(self.lab, "srv", ["state", "close-wait", "pid", str(self.app.pid)])
        self.result.fixed_by.append(how)

    def verify(self) -> None:
        pid = self.app.pid
        self.say.step("verify")
        gone, _t = wait_until(lambda: self.owned("close-wait", show=False) == 0, 3.0)
        after = self.owned("close-wait")
        fds_after = tools.socket_fds(pid)
        self.fact(close_wait_after=after, socket_fds_after=fds_after)
        self.check("cure", "TCP state freed: no CLOSE_WAIT left", gone and after == 0,
                   f"{after} CLOSE_WAIT owned by pid {pid}")
        self.check("cure", "the fds remain: the process must still close() them",
                   fds_after > 0 and fds_after >= self.fds - 2,
                   f"{fds_after} socket fds still open in pid {pid} (ls -l /proc/{pid}/fd)")
        self.say.note("SOCK_DESTROY sent RST and freed the kernel's TCP state; the application's fds stay "
                      "until it calls close(): the leak moved from the TCP table to the fd table (fd-leak).")
        again = self.doctor("srv", ["--pid", str(pid)])
        self.refute(again, "close-wait-leak", "after the kill")
