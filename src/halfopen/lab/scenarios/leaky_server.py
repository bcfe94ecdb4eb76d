"""leaky-server: a server that never closes; clients close -> CLOSE_WAIT, fds run out."""

from __future__ import annotations

import re
import time

from .. import tools
from ..scenario import Ctx, connect, errname, wait_until

NAME = "leaky-server"
FINDINGS = ("close-wait-leak", "fd-exhaustion")
SUMMARY = "a server reads EOF but never calls close(): CLOSE_WAIT piles up until fds run out"
PORT = 8080
NOFILE = 64
CLIENTS = 60
TRACE_S = 4.0  # the doctor's trace window, begun before the clients close


def owned(ctx: Ctx, pid: int, state: str, show: bool = True) -> int:
    out = ctx.lab.sh(["ss", "-Htanp", "state", state], ns="srv", show=show).stdout
    return len(re.findall(rf"pid={pid},", out))


def run(ctx: Ctx) -> None:
    lab = ctx.lab
    ctx.say.step("build: two hosts, srv and cli, on one veth link")
    lab.add_netns("srv")
    lab.add_netns("cli")
    srv_ip, _cli_ip = lab.link("srv", "cli")

    ctx.say.step(f"break: a server that never calls close(), soft fd limit {NOFILE}")
    app = lab.spawn("srv", PORT, "leak", nofile=NOFILE)
    ctx.say.note(f"same as: prlimit --pid {app.pid} --nofile={NOFILE}:")
    ctx.fact(server_pid=app.pid, port=PORT)
    ctx.say.note(f"{CLIENTS} clients connect, then close (each sends FIN)")
    socks = []
    with lab.inside("cli"):
        for _ in range(CLIENTS):
            s = connect(srv_ip, PORT, timeout=2.0)
            if isinstance(s, int):
                ctx.say.note(f"connect: {errname(s)}")
                break
            socks.append(s)
    accepted_err = app.wait_event("accept_error", 5.0)
    ctx.say.note("the doctor traces the kernel's events while the clients close (the strace check, "
                 "without ptrace)")
    words = ["doctor", "--json", "--trace", str(TRACE_S), *tools.doctor_words(lab),
             "--pid", str(app.pid), "--port", str(PORT)]
    with tools.Traced(lab, "srv", words) as traced:
        for s in socks:
            s.close()
        closed_at = time.monotonic()
        wait_until(lambda: owned(ctx, app.pid, "close-wait", show=False) >= len(socks) - 12, 5.0)

    ctx.say.step("symptom, seen directly")
    cw = owned(ctx, app.pid, "close-wait")
    fds = tools.socket_fds(app.pid)
    ctx.fact(close_wait_before=cw, socket_fds_before=fds)
    ctx.check("symptom", "server holds CLOSE_WAIT sockets", cw >= 40,
              f"{cw} CLOSE_WAIT owned by pid {app.pid} (ss -tanp state close-wait)")
    ctx.check("symptom", "server near its fd limit", fds >= NOFILE - 10,
              f"{fds} socket fds, soft limit {NOFILE}" +
              (f"; accept() failed with {accepted_err['errno']}" if accepted_err else ""))
    rows = [o for o in traced.json().get("trace", {}).get("owners", []) if o.get("pid") == app.pid]
    fins = rows[0]["fins_received"] if rows else 0
    closes = rows[0]["closes_called"] if rows else None
    ctx.fact(trace_fins_received=fins, trace_closes_called=closes)
    ctx.check("symptom", "the trace: FIN received on every CLOSE_WAIT socket, close() called on none",
              fins == cw and closes == 0,
              f"doctor --trace {TRACE_S:g}: received FIN on {fins} connections, called close() on "
              f"{closes}; {cw} in CLOSE_WAIT")
    lab.sh(["grep", "Max open files", f"/proc/{app.pid}/limits"], echo=True)

    # a CLOSE_WAIT socket's age is the time since the peer's FIN (tcp_info last_ack_recv);
    # the doctor counts one as stuck from --min-age on, and reads the sockets at the start
    # of its window: let the youngest grow older than that first
    wait = closed_at + tools.DOCTOR_MIN_AGE + 0.5 - time.monotonic()
    if wait > 0:
        ctx.say.note(f"waiting {wait:.1f}s: the youngest CLOSE_WAIT must be older than the "
                     f"doctor's --min-age {tools.DOCTOR_MIN_AGE}s to count as stuck")
        time.sleep(wait)
    report = ctx.doctor("srv", ["--pid", str(app.pid)])
    ctx.expect(report, "close-wait-leak", pid=app.pid)
    ctx.expect(report, "fd-exhaustion", pid=app.pid)

    ctx.say.step("fix: the real fix is close() in the application; halfopen kill frees the TCP state now")
    how = tools.kill(lab, "srv", ["state", "close-wait", "pid", str(app.pid)])
    ctx.result.fixed_by.append(how)

    ctx.say.step("verify")
    gone, _t = wait_until(lambda: owned(ctx, app.pid, "close-wait", show=False) == 0, 3.0)
    after = owned(ctx, app.pid, "close-wait")
    fds_after = tools.socket_fds(app.pid)
    ctx.fact(close_wait_after=after, socket_fds_after=fds_after)
    ctx.check("cure", "TCP state freed: no CLOSE_WAIT left", gone and after == 0,
              f"{after} CLOSE_WAIT owned by pid {app.pid}")
    ctx.check("cure", "the fds remain: the process must still close() them", fds_after > 0 and fds_after >= fds - 2,
              f"{fds_after} socket fds still open in pid {app.pid} (ls -l /proc/{app.pid}/fd)")
    ctx.say.note("SOCK_DESTROY sent RST and freed the kernel's TCP state; the application's fds stay "
                 "until it calls close(): the leak moved from the TCP table to the fd table (fd-leak).")
    again = ctx.doctor("srv", ["--pid", str(app.pid)])
    ctx.refute(again, "close-wait-leak", "after the kill")
