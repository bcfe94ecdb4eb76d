"""middlebox-timeout: a router forgets an idle flow and silently drops its packets."""

from __future__ import annotations

import re
import socket
import time

from ...diagnose.deadpeer import MIN_RETRANS
from .. import tools
from ..scenario import Ctx, connect, errname, wait_until

NAME = "middlebox-timeout"
FINDINGS = ("timeout-mismatch", "dead-peer")
SUMMARY = ("client - router - server: the router's conntrack forgets an idle flow and drops its "
           "packets; the doctor's keepalive, inside the router timeout, keeps it alive; RST on "
           "expiry is kinder")
NEEDS = ("nft", "conntrack")
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


def build(ctx: Ctx) -> tuple[str, str]:
    lab = ctx.lab
    ctx.say.step("build: cli - rtr - srv; the router tracks connections and forwards only known flows")
    cli_ip, srv_ip = lab.routed()
    lab.nft("rtr", RULES % "drop")
    lab.sysctl("rtr", "net.netfilter.nf_conntrack_tcp_timeout_established", CT_TIMEOUT, shrink=True)
    lab.sysctl("rtr", "net.netfilter.nf_conntrack_tcp_loose", 0)
    ctx.say.note("tcp_loose=0: a mid-stream packet of a flow the router forgot is INVALID, not a new flow")
    return cli_ip, srv_ip


def hello(ctx: Ctx, srv_ip: str) -> socket.socket | None:
    with ctx.lab.inside("cli"):
        s = connect(srv_ip, PORT, timeout=2.0)
    if isinstance(s, int):
        ctx.check("symptom", "client connects through the router", False, errname(s))
        return None
    s.sendall(b"hello\n")
    s.settimeout(2.0)
    s.recv(16)
    return s


def backoff(ctx: Ctx) -> int:
    """The server socket's retransmission backoff (icsk_backoff, `ss -i` "backoff:N")."""
    out = ctx.lab.sh(["ss", "-tnoi", "state", "established", "sport", "=", f":{PORT}"], ns="srv",
                     check=False, show=False, echo=False).stdout
    m = re.search(r"\bbackoff:(\d+)", out)
    return int(m.group(1)) if m else 0


def ct_entries(ctx: Ctx, show: bool = True) -> int:
    out = ctx.lab.sh(["conntrack", "-L", "-p", "tcp", "--dport", str(PORT)], ns="rtr",
                     check=False, show=show, echo=show).stdout
    return sum(1 for line in out.splitlines() if "ESTABLISHED" in line)


def _keepalive_cure(report: dict, pid: int) -> tuple[int, int, int] | None:
    """(idle, interval, count) of the keepalive fix the doctor proposed for `pid`'s dead peers."""
    for f in report.get("findings", []):
        if f.get("id") == "dead-peer" and f.get("subject", {}).get("pid") == pid:
            for fix in f.get("fixes", []):
                p = fix.get("params") or {}
                if fix.get("action") == "keepalive":
                    return p["idle"], p["interval"], p["count"]
    return None


def run(ctx: Ctx) -> None:
    lab = ctx.lab
    _cli_ip, srv_ip = build(ctx)
    app = lab.spawn("srv", PORT, "hold")
    ctx.fact(server_pid=app.pid, port=PORT, router_timeout=CT_TIMEOUT)

    ctx.say.step("a client connects through the router and goes idle")
    s1 = hello(ctx, srv_ip)
    if s1 is None:
        return
    ct_entries(ctx)
    ctx.say.note(f"idle for {IDLE_FOR}s, longer than the router's {CT_TIMEOUT}s timeout ...")
    time.sleep(IDLE_FOR)

    ctx.say.step("break: the router forgot the flow; the server writes")
    left = ct_entries(ctx)
    ctx.check("symptom", "router has forgotten the idle flow", left == 0, f"{left} conntrack entries")
    app.ask("write news", "wrote")
    s1.settimeout(1.5)
    try:
        got = s1.recv(64)
    except socket.timeout:
        got = b""
    ctx.check("symptom", "the server's data never arrives", got == b"", repr(got) if got else "recv timed out")
    # dead-peer asks for MIN_RETRANS backoffs (200 ms, 400 ms, 800 ms: about 1.4 s after the
    # write); on a busy machine the doctor may otherwise look before the third one
    wait_until(lambda: backoff(ctx) >= MIN_RETRANS, 15)
    lab.sh(["ss", "-tnoi", "state", "established", "sport", "=", f":{PORT}"], ns="srv", echo=True)
    lab.sh(["nft", "list", "chain", "inet", "lab", "forward"], ns="rtr", echo=True)

    report = ctx.doctor("srv", ["--pid", str(app.pid), "--middlebox", str(CT_TIMEOUT)])
    ctx.say.note(f"--middlebox {CT_TIMEOUT}: a middlebox with a {CT_TIMEOUT}s idle timeout on the "
                 f"path, declared for the namespace checked with --netns")
    ctx.expect(report, "timeout-mismatch", netns=lab.ns("srv"))
    ctx.expect(report, "dead-peer", pid=app.pid)
    cure = _keepalive_cure(report, app.pid)
    router = ctx.doctor("rtr")
    ctx.expect(router, "timeout-mismatch", middlebox="conntrack")
    s1.close()
    tools.kill(lab, "srv", ["state", "established", "sport", "=", f":{PORT}"])
    ctx.say.note("(the half-open connection is gone now; next, the same idle pattern with the fix)")

    if cure is None:
        ctx.check("cure", "the doctor proposes a keepalive for the server", False, "none proposed")
        return
    idle, interval, count = cure
    ctx.check("cure", f"the proposed keepalive ends inside the router's {CT_TIMEOUT}s",
              idle + interval * count < CT_TIMEOUT, f"{idle}s + {interval}s x {count}")
    ctx.say.step(f"fix: the doctor's keepalive ({idle}s/{interval}s x{count}: first probe and a "
                 f"dead peer's reset inside {CT_TIMEOUT}s), retrofitted onto the server")
    s2 = hello(ctx, srv_ip)
    if s2 is None:
        return
    ctx.result.fixed_by.append(tools.keepalive(lab, app.pid, idle, interval, count))
    lab.shrunk["srv: TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT (per socket)"] = f"{idle}/{interval}/{count}"
    ctx.say.note(f"idle for {IDLE_FOR}s again ...")
    time.sleep(IDLE_FOR)

    ctx.say.step("verify: the same idle gap, and the flow survives")
    kept = ct_entries(ctx)
    ctx.check("cure", "router still tracks the flow (keepalive probes refresh it)", kept == 1,
              f"{kept} conntrack entries")
    app.ask("write news", "wrote")
    s2.settimeout(2.0)
    try:
        got = s2.recv(64)
    except socket.timeout:
        got = b""
    ctx.check("cure", "the server's data arrives after the idle gap", got == b"news\n", repr(got))
    s2.close()

    ctx.say.step("variant: the router answers a forgotten flow with RST instead of dropping it")
    lab.sh(["nft", "flush", "ruleset"], ns="rtr")
    lab.nft("rtr", RULES % "reject with tcp reset")
    app2 = lab.spawn("srv", PORT + 1, "hold")
    # the doctor traces from before the connections (the lookup that names their owner
    # also reads when they last carried data: the idle time before each reset)
    words = ["doctor", "--json", "--trace", str(TRACE_S), *tools.doctor_words(lab),
             "--pid", str(app2.pid), "--port", str(PORT + 1)]
    with tools.Traced(lab, "srv", words) as traced:
        conns = []
        for _ in range(VARIANT_CONNS):  # two: one reset after idle could be anything
            with lab.inside("cli"):
                s3 = connect(srv_ip, PORT + 1, timeout=2.0)
            if isinstance(s3, int):
                ctx.check("cure", "variant: client connects", False, errname(s3))
                return
            s3.sendall(b"hello\n")
            s3.settimeout(2.0)
            s3.recv(16)
            conns.append(s3)
        ctx.say.note(f"idle for {IDLE_FOR}s without keepalive ...")
        time.sleep(IDLE_FOR)
        t0 = time.monotonic()
        app2.send("write news")
        err = app2.wait_event("conn_error", 3.0)
        took = time.monotonic() - t0
    ctx.check("cure", "variant: the server learns at once (RST from the router)",
              err is not None and err.get("errno") == "ECONNRESET",
              f"{err.get('errno') if err else 'nothing'} after {took:.1f}s")
    doc = traced.json()
    rows = [o for o in doc.get("trace", {}).get("owners", []) if o.get("pid") == app2.pid]
    resets_got = rows[0]["resets_received"] if rows else 0
    named = [f for f in doc.get("findings", []) if f.get("id") == "timeout-mismatch"
             and any(e.get("what") == "idle_resets_received" for e in f.get("evidence", []))]
    ctx.fact(trace_resets_received=resets_got, trace_middlebox_named=bool(named))
    ctx.check("cure", "variant: the trace shows the resets the server received",
              resets_got == VARIANT_CONNS, f"doctor --trace {TRACE_S:g}: {resets_got} resets received by pid {app2.pid}")
    detail = named[0].get("title", "") if named else "no timeout-mismatch with idle_resets_received"
    ctx.check("cure", "variant: the doctor names the middlebox from the resets after idle", bool(named),
              detail)
    ok, _ = wait_until(lambda: tools.ss_count(lab, "srv", ["state", "established", "sport", "=",
                                                            f":{PORT + 1}"], show=False) == 0, 2.0)
    ctx.check("cure", "variant: no half-open socket left on the server", ok)
    ctx.say.note("A silent drop leaves both ends half-open until a write times out (tcp_retries2, "
                 "~15 min by default); an RST ends it in one round trip. Keepalive below the "
                 "middlebox's idle timeout avoids both.")
    for s3 in conns:
        s3.close()
