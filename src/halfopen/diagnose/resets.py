"""reset-on-close: the application closes connections holding data it never read, so
the kernel resets them instead of closing them.

tcp_close() (net/ipv4/tcp.c): when the receive queue still holds data the
application did not read, the kernel sends RST, not FIN (RFC 2525 2.17, RFC 1122
4.2.2.13), counts TcpExt.TCPAbortOnClose and, since 6.10, gives tcp_send_reset
the reason TCP_ABORT_ON_CLOSE. The peer's kernel answers its reads and writes
with ECONNRESET and drops what it had not yet handed over: responses cut short,
"connection reset by peer" in the clients' logs, retries. Typical: an HTTP
server closing a keep-alive connection with a pipelined request unread, an
error path that closes without draining, a proxy dropping an upstream
mid-response.

Per namespace, from the counter window: TCPAbortOnClose in the window. The
counter names no process: info, with `doctor --trace` as the way to name it.
With `doctor --trace`, per owner: the resets it sent with reason
tcp_abort_on_close in the trace window; warning from WARN_COUNT, info below.
"""

from __future__ import annotations

from ..model.finding import Finding, Fix
from ..model.rules import CAUSES
from ..model.trace import TraceFacts
from .common import code_fix, ev, plural, seconds, subject, who
from .context import Context
from .traced import TRACEFS

RULE = "reset-on-close"
COUNTER = "TcpExt.TCPAbortOnClose"
REASON = "tcp_abort_on_close"  # enum sk_rst_reason, as collect.trace_read names it
WARN_COUNT = 10  # resets one owner sent in the window

WHY = (
    "When a process closes a TCP socket whose receive queue still holds data it never "
    "read, the kernel cannot end the connection gracefully: it sends RST instead of FIN "
    "(tcp_close, RFC 2525 2.17) and counts TCPAbortOnClose. The peer's next read or "
    "write fails with ECONNRESET, and data already sent to it but not yet read by its "
    "application is thrown away. Clients see 'connection reset by peer' and truncated "
    "responses. The fix is in the closing code: read (or shut down the write side and "
    "drain) until EOF before close(), or stop accepting requests on a connection before "
    "closing it.")

DRAIN = ("before close(): shutdown(SHUT_WR), then read until EOF (bounded by a short "
         "timeout) so no unread data is left; nginx does this with lingering_close")


def check_reset_on_close(ctx: Context) -> list[Finding]:
    trace = ctx.traced()
    owners = _by_owner(trace) if trace is not None else []
    if owners:
        return owners
    return _by_namespace(ctx)


def _by_owner(trace: TraceFacts) -> list[Finding]:
    found = []
    for row in trace.owners:
        sent = row.resets_sent.get(REASON, 0)
        if not sent or row.pid is None:
            continue
        comm = row.comm or "?"
        name = who(row.pid, comm)
        found.append(Finding(
            id=RULE, severity="warning" if sent >= WARN_COUNT else "info", cause=CAUSES[RULE],
            title=f"{name} reset {plural(sent, 'connection')} by closing them with unread "
                  f"data in {seconds(trace.window_s)}",
            subject=subject(row.netns or "host", row.pid, comm),
            evidence=[ev("resets_sent_abort_on_close", sent, TRACEFS,
                         "tcp:tcp_send_reset with reason TCP_ABORT_ON_CLOSE, this owner's "
                         f"sockets, in the {seconds(trace.window_s)} trace window")],
            fixes=[code_fix(DRAIN)], why=WHY))
    return found


def _by_namespace(ctx: Context) -> list[Finding]:
    found = []
    for netns in sorted(ctx.facts.namespaces):  # Unavailable without host facts
        sent = ctx.delta(netns, COUNTER)
        if not sent or sent <= 0:
            continue  # none, or no counter window (--window 0) to see one in
        window = ctx.window_s(netns) or 0.0
        found.append(Finding(
            id=RULE, severity="info", cause=CAUSES[RULE],
            title=f"netns {netns}: {plural(sent, 'connection')} closed with unread data and "
                  f"reset in {seconds(window)} (TCPAbortOnClose)",
            subject=subject(netns),
            evidence=[ev("tcp_abort_on_close", sent, "/proc/net/netstat",
                         f"TcpExt.TCPAbortOnClose over the {seconds(window)} counter window")],
            fixes=[_trace_fix(netns), code_fix(DRAIN)], why=WHY))
    return found


def _trace_fix(netns: str) -> Fix:
    where = "" if netns == "host" else f" --netns {netns}"
    return Fix("trace", f"halfopen doctor --trace 10{where}", False, {},
               "names the process: the kernel's resets with their reason, per owner")
