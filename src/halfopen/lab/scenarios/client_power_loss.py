"""client-power-loss: the client vanishes without a word; the server's socket stays ESTABLISHED."""

from __future__ import annotations

import time

from .. import tools
from ..scenario import Ctx, connect, errname, wait_until

NAME = "client-power-loss"
FINDINGS = ("keepalive-off",)
SUMMARY = "the client loses power (nft drops all, link down): an idle server socket stays ESTABLISHED forever"
NEEDS = ("nft",)
PORT = 8081
IDLE, INTERVAL, COUNT = 2, 1, 3  # keepalive retrofitted by the fix


def run(ctx: Ctx) -> None:
    lab = ctx.lab
    ctx.say.step("build: srv and cli on one veth link")
    lab.add_netns("srv")
    lab.add_netns("cli")
    srv_ip, _cli_ip = lab.link("srv", "cli")
    app = lab.spawn("srv", PORT, "hold")
    ctx.fact(server_pid=app.pid, port=PORT)

    ctx.say.step("a client connects, says hello, and goes idle")
    with lab.inside("cli"):
        s = connect(srv_ip, PORT, timeout=2.0)
    if isinstance(s, int):
        ctx.check("symptom", "client connects", False, tools_err(s))
        return
    s.sendall(b"hello\n")
    s.settimeout(2.0)
    ctx.check("symptom", "server answers", s.recv(16) == b"hi\n")

    ctx.say.step("break: the client loses power: it drops everything and its link goes down")
    lab.nft("cli", """
table inet lab {
  chain in  { type filter hook input  priority 0; policy drop; }
  chain out { type filter hook output priority 0; policy drop; }
}""")
    lab.sh(["ip", "-n", lab.ns("cli"), "link", "set", "to-srv", "down"])

    ctx.say.note("2 s of silence ...")
    time.sleep(2.0)
    ctx.say.step("symptom, seen directly: the server still sees an ESTABLISHED peer, with no timer")
    lab.sh(["ss", "-tnoi", "state", "established", "sport", "=", f":{PORT}"], ns="srv", echo=True)
    est = tools.ss_count(lab, "srv", ["state", "established", "sport", "=", f":{PORT}"], show=False)
    timers = lab.sh(["ss", "-Htno", "state", "established", "sport", "=", f":{PORT}"], ns="srv",
                    show=False).stdout
    ctx.check("symptom", "server socket ESTABLISHED to a dead peer", est == 1, f"{est} ESTABLISHED")
    ctx.check("symptom", "no keepalive timer on it", "keepalive" not in timers,
              "ss -o shows no timer:(keepalive...)")

    report = ctx.doctor("srv", ["--pid", str(app.pid)])
    ctx.expect(report, "keepalive-off", pid=app.pid)

    ctx.say.step(f"fix: retrofit keepalive onto the running server (idle {IDLE}s, "
                 f"interval {INTERVAL}s, count {COUNT}) — no restart")
    ctx.result.fixed_by.append(tools.keepalive(lab, app.pid, IDLE, INTERVAL, COUNT))
    lab.shrunk["srv: TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT (per socket)"] = f"{IDLE}/{INTERVAL}/{COUNT}"
    lab.sh(["ss", "-tno", "state", "established", "sport", "=", f":{PORT}"], ns="srv", echo=True)

    ctx.say.step(f"verify: the socket is reset within idle + interval*count = {IDLE + INTERVAL * COUNT}s")
    bound = IDLE + INTERVAL * COUNT
    gone, took = wait_until(
        lambda: tools.ss_count(lab, "srv", ["state", "established", "sport", "=", f":{PORT}"],
                               show=False) == 0, bound + 3.0)
    ctx.fact(reset_after_s=round(took, 1))
    ctx.check("cure", "dead connection closed by keepalive", gone,
              f"after {took:.1f}s (bound {bound}s + 3s slack)")
    err = app.wait_event("conn_error", 2.0)
    ctx.check("cure", "the server learns of it", err is not None and err.get("errno") == "ETIMEDOUT",
              f"recv() -> {err.get('errno') if err else 'nothing'}")
    s.close()


def tools_err(e: int) -> str:
    return f"connect failed: {errname(e)}"
