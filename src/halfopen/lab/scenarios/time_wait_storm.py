"""time-wait-storm: short connections to one ip:port exhaust a narrow ephemeral port range."""

from __future__ import annotations

import errno
import time

from .. import tools
from ..scenario import Scenario, connect, errname

PORT = 8092
RANGE = (40000, 40031)  # 32 ephemeral ports
LOOPS = 100


class TimeWaitStorm(Scenario):
    NAME = "time-wait-storm"
    FINDINGS = ("time-wait-pressure",)
    SUMMARY = ("a client opens and closes short connections to one server ip:port; with a narrow "
               "ip_local_port_range, TIME_WAIT holds every port and connect() fails EADDRNOTAVAIL")
    srv_ip: str
    done: int  # connections the storm made before connect() failed
    err: int | None  # the errno that stopped it

    def storm(self, n: int) -> tuple[int, int | None]:
        """Open and close up to n connections (client closes first); (done, errno that stopped it)."""
        done = 0
        with self.lab.inside("cli"):
            for _ in range(n):
                s = connect(self.srv_ip, PORT, timeout=1.0)
                if isinstance(s, int):
                    return done, s
                s.close()
                done += 1
        return done, None

    def tw(self, show: bool = True) -> int:
        return tools.ss_count(self.lab, "cli", ["state", "time-wait", "dport", "=", f":{PORT}"], show=show)

    def build(self) -> None:
        lab = self.lab
        self.say.step("build: srv and cli on one veth link; a narrow port range in cli")
        lab.add_netns("srv")
        lab.add_netns("cli")
        self.srv_ip, _ = lab.link("srv", "cli")
        lab.sysctl("cli", "net.ipv4.ip_local_port_range", f"{RANGE[0]} {RANGE[1]}", shrink=True)
        lab.sysctl("cli", "net.ipv4.tcp_tw_reuse", 0)
        app = lab.spawn("srv", PORT, "drain")
        self.fact(server_pid=app.pid, port=PORT)

    def break_(self) -> None:
        self.say.step(f"break: up to {LOOPS} connect/close in a row, the client closing first")
        self.done, self.err = done, err = self.storm(LOOPS)
        self.say.note(f"{done} connections, then connect() -> {errname(err) if err else 'no error'}")

    def diagnose(self) -> None:
        done, err = self.done, self.err
        self.say.step("symptom, seen directly")
        n_tw = self.tw()
        self.fact(connects_before=done, time_wait=n_tw)
        self.check("symptom", "connect() fails with EADDRNOTAVAIL", err == errno.EADDRNOTAVAIL,
                   f"after {done} connections: {errname(err) if err else 'none'}")
        self.check("symptom", "every port of the range is in TIME_WAIT", n_tw >= RANGE[1] - RANGE[0],
                   f"{n_tw} TIME_WAIT to :{PORT}, range {RANGE[0]}-{RANGE[1]}")
        self.lab.sh(["ss", "-s"], ns="cli", echo=True)

        report = self.doctor("cli")
        self.expect(report, "time-wait-pressure")

    def fix(self) -> None:
        lab = self.lab
        self.say.step("fix: the doctor's own fixes for the client's namespace: net.ipv4.tcp_tw_reuse=1 "
                      "(outgoing connections may reuse a TIME_WAIT port older than 1 s; safe with TCP "
                      "timestamps) and a wide ip_local_port_range")
        self.halfopen_fix("cli", "time-wait-pressure")
        reuse = lab.read_sysctl("cli", "net.ipv4.tcp_tw_reuse")
        lo, hi = (int(x) for x in lab.read_sysctl("cli", "net.ipv4.ip_local_port_range").split())
        self.check("cure", "tcp_tw_reuse is 1 in the client's namespace", reuse == "1",
                   f"net.ipv4.tcp_tw_reuse = {reuse}")
        self.check("cure", "the port range is wider", hi - lo > RANGE[1] - RANGE[0],
                   f"net.ipv4.ip_local_port_range = {lo} {hi} (was {RANGE[0]} {RANGE[1]})")
        time.sleep(1.1)  # tcp_tw_reuse takes a TIME_WAIT port once its last timestamp is 1 s old

    def verify(self) -> None:
        self.say.step("verify: the same storm, and more")
        done2, err2 = self.storm(LOOPS)
        self.check("cure", f"{LOOPS} connect/close in a row succeed", done2 == LOOPS,
                   f"{done2}" + (f", then {errname(err2)}" if err2 else ""))
        self.say.note("the best fix is in the client: reuse connections (HTTP keep-alive, a pool), "
                      "so no port is spent per request")
