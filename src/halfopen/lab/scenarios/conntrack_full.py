"""conntrack-full: the router's connection table fills; new flows are dropped, old ones work."""

from __future__ import annotations

import socket

from ..scenario import Ctx, connect, errname

NAME = "conntrack-full"
FINDINGS = ("conntrack-exhaustion",)
SUMMARY = ("client - router - server: the router's conntrack table is full; new flows' SYNs are "
           "dropped while tracked flows keep working; raising nf_conntrack_max cures it")
NEEDS = ("nft", "conntrack")
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


def set_max(ctx: Ctx, value: int) -> str:
    """Lower nf_conntrack_max for the router: inside its namespace where the kernel allows
    it, else host-wide (recorded first, restored on every exit path). Returns where."""
    lab = ctx.lab
    if lab.try_sysctl("rtr", KEY, value) is None:
        lab.shrunk[f"rtr: {KEY}"] = str(value)
        return "netns"
    ctx.say.note(f"this kernel ({lab.read_sysctl(None, 'kernel.osrelease')}) keeps {KEY} read-only "
                 "outside the initial namespace: the limit is host-wide. It applies to each "
                 "namespace's own count, so the lab lowers it for a few seconds, records the "
                 "original in the state file first, and restores it on every exit path")
    lab.host_sysctl(KEY, value)
    return "host"


def run(ctx: Ctx) -> None:
    lab = ctx.lab
    ctx.say.step("build: cli - rtr - srv; the router tracks every forwarded flow")
    _cli_ip, srv_ip = lab.routed()
    lab.nft("rtr", RULES)
    app = lab.spawn("srv", PORT, "hold")
    ctx.fact(server_pid=app.pid, port=PORT, host_max_before=int(lab.read_sysctl(None, KEY)))

    ctx.say.step("an old flow, established before the table fills")
    with lab.inside("cli"):
        old = connect(srv_ip, PORT, timeout=2.0)
    if isinstance(old, int):
        ctx.check("symptom", "client connects through the router", False, errname(old))
        return
    old.settimeout(2.0)
    old.sendall(b"hello\n")
    old.recv(16)

    ctx.say.step(f"break: nf_conntrack_max={CT_MAX}, then open flows until the table is full")
    where = set_max(ctx, CT_MAX)
    ctx.fact(max_changed_in=where)
    flows: list[socket.socket] = []
    failed = None
    try:
        with lab.inside("cli"):
            for _ in range(CT_MAX + 8):
                s = connect(srv_ip, PORT, timeout=1.0)
                if isinstance(s, int):
                    failed = s
                    break
                flows.append(s)
        ctx.say.note(f"{len(flows)} new flows, then connect() -> {errname(failed) if failed else 'no error'}")

        ctx.say.step("symptom, seen directly")
        lab.sh(["sysctl", "net.netfilter.nf_conntrack_count"], ns="rtr", echo=True)
        count = int(lab.read_sysctl("rtr", "net.netfilter.nf_conntrack_count"))
        stats = lab.sh(["conntrack", "-S"], ns="rtr", echo=True, check=False).stdout
        drops = sum(int(w.split("=")[1]) for w in stats.split() if w.startswith("drop="))
        ctx.fact(ct_count=count, ct_drops=drops)
        ctx.check("symptom", "router's table is full", count >= CT_MAX, f"nf_conntrack_count {count} of {CT_MAX}")
        ctx.check("symptom", "new flows are dropped", failed is not None,
                  f"connect() -> {errname(failed) if failed else 'succeeded'}; conntrack -S drop={drops}")
        old.sendall(b"hello\n")
        ctx.check("symptom", "the old flow still works", old.recv(16) == b"hi\n")

        report = ctx.doctor("rtr")
        ctx.expect(report, "conntrack-exhaustion")

        ctx.say.step("fix: raise nf_conntrack_max (size it to peak flows x 2; or shorten "
                     "nf_conntrack_tcp_timeout_established)")
        ctx.say.note(f"not `halfopen fix conntrack-exhaustion`: the doctor's {KEY} fix is for the "
                     "whole host (one value for every namespace on kernels where it is read-only "
                     "in a namespace), and the lab lets `halfopen fix` change only its own "
                     "namespaces; it undoes its own lowering instead"
                     + (": it restores the recorded host value" if where == "host" else ""))
        if where == "host":
            lab.restore_host_sysctls()
        else:
            lab.sysctl("rtr", KEY, 65536)
        ctx.result.fixed_by.append(f"sysctl {KEY}")

        ctx.say.step("verify")
        with lab.inside("cli"):
            ok = 0
            for _ in range(8):
                s = connect(srv_ip, PORT, timeout=1.0)
                if not isinstance(s, int):
                    ok += 1
                    flows.append(s)
        ctx.check("cure", "new flows get through", ok == 8, f"{ok}/8")
        old.sendall(b"hello\n")
        ctx.check("cure", "the old flow still works", old.recv(16) == b"hi\n")
    finally:
        lab.restore_host_sysctls()
        for s in flows:
            s.close()
        old.close()
    ctx.check("cure", "host-wide limit restored", int(lab.read_sysctl(None, KEY)) ==
              ctx.result.facts["host_max_before"], f"{KEY} = {lab.read_sysctl(None, KEY)}")
