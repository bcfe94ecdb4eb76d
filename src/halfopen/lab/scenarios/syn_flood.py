"""syn-flood: spoofed SYNs fill a small SYN queue; legitimate clients cannot connect."""

from __future__ import annotations

import shlex
import subprocess
import time

from .. import tools
from ..scenario import Ctx, connect, errname

NAME = "syn-flood"
FINDINGS = ("syn-flood",)
SUMMARY = ("an attacker sends SYNs from spoofed 198.19.x addresses at a listener with a small "
           "backlog and syncookies off; legitimate connects fail until syncookies are on")
NEEDS = ("hping3",)
PORT = 8090
BACKLOG = 128  # the doctor names a listener whose SYN queue is full (SYN_RECV >= backlog) and drops or cookies grow
SPOOFED = ("198.19.7.1", "198.19.7.2", "198.19.8.1", "198.19.9.1")  # all inside 198.18.0.0/15
INTERVAL_US = 4000  # per hping3: 250 SYN/s each, 1000 SYN/s in all
MAX_PACKETS = 15000  # per hping3: bounds the flood to 60 s even if the lab were to hang
TRIES = 8


def legit(ctx: Ctx, srv_ip: str) -> tuple[int, list[str]]:
    ok, errs = 0, []
    with ctx.lab.inside("cli"):
        for _ in range(TRIES):
            s = connect(srv_ip, PORT, timeout=1.0)
            if isinstance(s, int):
                errs.append(errname(s))
            else:
                ok += 1
                s.close()
    return ok, errs


def run(ctx: Ctx) -> None:
    lab = ctx.lab
    ctx.say.step("build: srv with two links: one to a legitimate client, one to an attacker")
    for role in ("srv", "cli", "atk"):
        lab.add_netns(role)
    srv_ip, _cli = lab.link("srv", "cli")
    srv2, atk_ip = lab.link("srv", "atk")
    lab.route("atk", srv2)
    lab.route("srv", atk_ip, "198.19.0.0/16")
    ctx.say.note("SYN-ACKs to the spoofed sources go to the attacker's host, which drops them: "
                 "nobody answers, so each SYN_RECV waits out its SYN-ACK retries")
    for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.to-atk.rp_filter"):
        lab.sysctl("srv", key, 0)
    lab.sysctl("srv", "net.ipv4.tcp_syncookies", 0)
    app = lab.spawn("srv", PORT, "drain", backlog=BACKLOG)
    ctx.fact(server_pid=app.pid, port=PORT)

    ok0, _ = legit(ctx, srv_ip)
    ctx.say.note(f"before the flood: {ok0}/{TRIES} legitimate connects succeed")

    ctx.say.step(f"break: flood from {len(SPOOFED)} spoofed sources ({len(SPOOFED) * 1_000_000 // INTERVAL_US} SYN/s)")
    floods = []
    for src in SPOOFED:
        argv = ["hping3", "-q", "-S", "-p", str(PORT), "-a", src, "-I", "to-srv", "-i", f"u{INTERVAL_US}",
                "-c", str(MAX_PACKETS), srv_ip]
        full = ["ip", "netns", "exec", lab.ns("atk"), *argv]
        lab.say.cmd(shlex.join(full) + " &")
        p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        lab.record.add_pid(p.pid)
        floods.append(p)
    try:
        time.sleep(1.0)
        ctx.say.step("symptom, seen directly")
        before = tools.nstat(lab, "srv", ["TcpExtListenDrops", "TcpExtTCPReqQFullDrop"], show=False)
        ok1, errs = legit(ctx, srv_ip)
        recv = tools.ss_count(lab, "srv", ["state", "syn-recv", "sport", "=", f":{PORT}"])
        drops = tools.nstat(lab, "srv", ["TcpExtListenDrops", "TcpExtTCPReqQFullDrop",
                                         "TcpExtSyncookiesSent"])
        lab.sh(["ss", "-ltn", "sport", "=", f":{PORT}"], ns="srv", echo=True)
        ctx.fact(syn_recv=recv, legit_ok_during_flood=ok1)
        ctx.check("symptom", "SYN queue full of spoofed half-open entries", recv >= BACKLOG // 2,
                  f"{recv} SYN_RECV on :{PORT} (backlog {BACKLOG})")
        ctx.check("symptom", "legitimate connects fail", ok1 <= TRIES // 4,
                  f"{ok1}/{TRIES} succeed; errors {sorted(set(errs))}")
        ctx.check("symptom", "the kernel drops SYNs",
                  drops["TcpExtTCPReqQFullDrop"] > before["TcpExtTCPReqQFullDrop"],
                  f"TcpExtTCPReqQFullDrop {before['TcpExtTCPReqQFullDrop']} -> {drops['TcpExtTCPReqQFullDrop']}")

        report = ctx.doctor("srv")
        ctx.expect(report, "syn-flood", port=PORT)

        ctx.say.step("fix: the doctor's own fix, SYN cookies on (the flood goes on)")
        ctx.fix("srv", "syn-flood")
        cookies_on = lab.read_sysctl("srv", "net.ipv4.tcp_syncookies")
        ctx.check("cure", "tcp_syncookies is 1 in the server's namespace", cookies_on == "1",
                  f"net.ipv4.tcp_syncookies = {cookies_on}")
        ctx.say.note("a larger backlog (listen(n) and net.ipv4.tcp_max_syn_backlog) buys time too, "
                     "but only cookies keep no state per spoofed SYN")

        ctx.say.step("verify: legitimate connects during the same flood")
        alive = sum(p.poll() is None for p in floods)
        ok2, errs2 = legit(ctx, srv_ip)
        cookies = tools.nstat(lab, "srv", ["TcpExtSyncookiesSent", "TcpExtSyncookiesRecv"])
        ctx.fact(legit_ok_after_fix=ok2)
        ctx.check("cure", "the flood is still running", alive == len(floods), f"{alive} hping3 running")
        ctx.check("cure", "legitimate connects succeed", ok2 == TRIES,
                  f"{ok2}/{TRIES}" + (f"; errors {sorted(set(errs2))}" if errs2 else ""))
        ctx.check("cure", "they got in by SYN cookie", cookies["TcpExtSyncookiesRecv"] >= ok2 > 0,
                  f"SyncookiesSent {cookies['TcpExtSyncookiesSent']}, "
                  f"SyncookiesRecv {cookies['TcpExtSyncookiesRecv']}")
    finally:
        for p in floods:
            p.kill()
            p.wait(timeout=5)
