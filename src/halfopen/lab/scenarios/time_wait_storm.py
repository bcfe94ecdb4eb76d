"""time-wait-storm: short connections to one ip:port exhaust a narrow ephemeral port range."""

from __future__ import annotations

import errno
import time

from .. import tools
from ..scenario import Ctx, connect, errname

NAME = "time-wait-storm"
FINDINGS = ("time-wait-pressure",)
SUMMARY = ("a client opens and closes short connections to one server ip:port; with a narrow "
           "ip_local_port_range, TIME_WAIT holds every port and connect() fails EADDRNOTAVAIL")
PORT = 8092
RANGE = (40000, 40031)  # 32 ephemeral ports
LOOPS = 100


def storm(ctx: Ctx, srv_ip: str, n: int) -> tuple[int, int | None]:
    """Open and close up to n connections (client closes first); (done, errno that stopped it)."""
    done = 0
    with ctx.lab.inside("cli"):
        for _ in range(n):
            s = connect(srv_ip, PORT, timeout=1.0)
            if isinstance(s, int):
                return done, s
            s.close()
            done += 1
    return done, None


def tw(ctx: Ctx, show: bool = True) -> int:
    return tools.ss_count(ctx.lab, "cli", ["state", "time-wait", "dport", "=", f":{PORT}"], show=show)


def run(ctx: Ctx) -> None:
    lab = ctx.lab
    ctx.say.step("build: srv and cli on one veth link; a narrow port range in cli")
    lab.add_netns("srv")
    lab.add_netns("cli")
    srv_ip, _ = lab.link("srv", "cli")
    lab.sysctl("cli", "net.ipv4.ip_local_port_range", f"{RANGE[0]} {RANGE[1]}", shrink=True)
    lab.sysctl("cli", "net.ipv4.tcp_tw_reuse", 0)
    app = lab.spawn("srv", PORT, "drain")
    ctx.fact(server_pid=app.pid, port=PORT)

    ctx.say.step(f"break: up to {LOOPS} connect/close in a row, the client closing first")
    done, err = storm(ctx, srv_ip, LOOPS)
    ctx.say.note(f"{done} connections, then connect() -> {errname(err) if err else 'no error'}")

    ctx.say.step("symptom, seen directly")
    n_tw = tw(ctx)
    ctx.fact(connects_before=done, time_wait=n_tw)
    ctx.check("symptom", "connect() fails with EADDRNOTAVAIL", err == errno.EADDRNOTAVAIL,
              f"after {done} connections: {errname(err) if err else 'none'}")
    ctx.check("symptom", "every port of the range is in TIME_WAIT", n_tw >= RANGE[1] - RANGE[0],
              f"{n_tw} TIME_WAIT to :{PORT}, range {RANGE[0]}-{RANGE[1]}")
    lab.sh(["ss", "-s"], ns="cli", echo=True)

    report = ctx.doctor("cli")
    ctx.expect(report, "time-wait-pressure")

    ctx.say.step("fix: the doctor's own fixes for the client's namespace: net.ipv4.tcp_tw_reuse=1 "
                 "(outgoing connections may reuse a TIME_WAIT port older than 1 s; safe with TCP "
                 "timestamps) and a wide ip_local_port_range")
    ctx.fix("cli", "time-wait-pressure")
    reuse = lab.read_sysctl("cli", "net.ipv4.tcp_tw_reuse")
    lo, hi = (int(x) for x in lab.read_sysctl("cli", "net.ipv4.ip_local_port_range").split())
    ctx.check("cure", "tcp_tw_reuse is 1 in the client's namespace", reuse == "1",
              f"net.ipv4.tcp_tw_reuse = {reuse}")
    ctx.check("cure", "the port range is wider", hi - lo > RANGE[1] - RANGE[0],
              f"net.ipv4.ip_local_port_range = {lo} {hi} (was {RANGE[0]} {RANGE[1]})")
    time.sleep(1.1)  # tcp_tw_reuse takes a TIME_WAIT port once its last timestamp is 1 s old

    ctx.say.step("verify: the same storm, and more")
    done2, err2 = storm(ctx, srv_ip, LOOPS)
    ctx.check("cure", f"{LOOPS} connect/close in a row succeed", done2 == LOOPS,
              f"{done2}" + (f", then {errname(err2)}" if err2 else ""))
    ctx.say.note("the best fix is in the client: reuse connections (HTTP keep-alive, a pool), "
                 "so no port is spent per request")
