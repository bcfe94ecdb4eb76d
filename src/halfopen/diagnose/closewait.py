"""close-wait-leak and fd-leak: the application does not close.

close-wait-leak, per process (and namespace):
  A CLOSE_WAIT socket is *stuck* when its estimated age is at least
  STUCK_AGE_S. Age estimate, per the kernel facts: the peer's FIN carries an
  ACK, so tcp_info.last_ack_recv (time since the last ACK) is a lower bound
  on the time since the FIN (a later ACK resets it); last_data_recv ignores a
  bare FIN, so it is an upper bound (the last data came at or before the FIN).
  Ages below are the lower bound unless said otherwise.

  severity   condition
  critical   stuck >= CRITICAL_COUNT, or RLIMIT_NOFILE projected within
             CRITICAL_ETA_S, or the process already uses >= FD_CRITICAL_RATIO
             of RLIMIT_NOFILE
  warning    stuck >= WARN_COUNT, or any stuck socket older than OLD_AGE_S
  info       1 .. WARN_COUNT-1 stuck sockets, all younger than OLD_AGE_S

  Compared with catpaw (>= 100 CLOSE_WAIT system-wide, no age): ours names
  the process, ignores sockets that are merely closing (younger than
  STUCK_AGE_S), and fires on a handful of old ones in one process.

fd-leak, per process (in the namespaces being checked, or owning sockets there):
  socket fds whose inode is in no kernel socket table of any namespace
  (HostFacts.stale_socket_fds; the collector reads every namespace's tables,
  so a socket made in another namespace is not mistaken for a stale one)
  *and* that were shut down both ways (StaleSocketFd.hup: POLLHUP|POLLRDHUP
  from poll() on a pidfd_getfd duplicate): the kernel closed the TCP
  connection under the application (RST, keepalive or tcp_retries2 gave up,
  SOCK_DESTROY) and the fd stays open. A socket that was never connected or
  bound is in no table either, but it is not shut down (hup False): not
  counted. Fds whose hup could not be read (None) are not counted; their
  number is evidence. warning from FD_LEAK_WARN such fds or on growth in
  --history; info below (an application may be about to close a connection
  that was reset a moment ago).
"""

from __future__ import annotations

from collections import Counter

from ..model.finding import Finding, Fix
from ..model.history import slope_per_s
from ..model.host import UNLIMITED
from ..model.states import TcpState
from .common import (
    SOCK_DIAG,
    TCP_INFO,
    by_owner,
    code_fix,
    ev,
    kill_fix,
    median,
    plural,
    prlimit_fix,
    seconds,
    subject,
    top,
    who,
)
from .context import Context, Unavailable

STUCK_AGE_S = 30  # a live application closes within milliseconds of reading EOF
OLD_AGE_S = 3600  # even one socket this old in CLOSE_WAIT is a bug, not a slow close
WARN_COUNT = 10
CRITICAL_COUNT = 100  # catpaw's system-wide number, applied per process and aged
CRITICAL_ETA_S = 24 * 3600  # RLIMIT_NOFILE reached within a day at the current growth
FD_CRITICAL_RATIO = 0.9
MIN_SPREAD_S = 60  # ages must span at least this to estimate a rate from them
FD_LEAK_WARN = 10  # as close-wait-leak's WARN_COUNT: dead connections still held

CAUSE = "application does not close"
CLOSE_WAIT = int(TcpState.CLOSE_WAIT)

WHY_CLOSE_WAIT = (
    "CLOSE_WAIT means the peer's FIN arrived and this process has not called close() on "
    "the socket. The kernel will not close it for the application: no timer ends "
    "CLOSE_WAIT except keepalive (off unless the application asked for it), so every "
    "such socket holds a file descriptor and kernel memory until the process closes it "
    "or exits. A Recv-Q of 1 or more means the process has not even read the EOF (it "
    "stopped reading the socket, e.g. a worker stuck or a connection forgotten in a "
    "pool); 0 means it read EOF (recv() returned 0) and did not close - typically an "
    "error path that returns without close(). This is not a network problem and not the "
    "peer's fault: a client that vanishes leaves ESTABLISHED, not CLOSE_WAIT. Killing "
    "the sockets (SOCK_DESTROY) frees the TCP state and sends RST, but the fds stay open "
    "until the application closes them; keepalive in CLOSE_WAIT moves the leak from the "
    "TCP table to the fd table. Only a code fix ends the leak."
)


def _age_s(sock) -> tuple[float | None, float | None]:
    """(lower, upper) bound of the time since the FIN, seconds; None without tcp_info."""
    ti = sock.tcp_info
    if ti is None:
        return None, None
    return ti.last_ack_recv / 1000, ti.last_data_recv / 1000


def check_close_wait(ctx: Context) -> list[Finding]:
    stuck_age = ctx.age(STUCK_AGE_S)
    old_age = max(OLD_AGE_S, stuck_age)
    socks = ctx.in_state(CLOSE_WAIT)
    hf = ctx.snapshot.host_facts
    findings = []
    for (netns, pid, comm), group in sorted(by_owner(socks).items(),
                                            key=lambda kv: -len(kv[1])):
        lows: list[float] = []
        highs: list[float] = []
        no_info = 0
        stuck = []
        for s in group:
            lo, hi = _age_s(s)
            if lo is None or hi is None:
                no_info += 1
                stuck.append(s)  # undated: count it, say so
                continue
            if lo >= stuck_age:
                stuck.append(s)
                lows.append(lo)
                highs.append(hi)
        if not stuck:
            continue
        count = len(stuck)
        unread = sum(1 for s in stuck if s.recv_q >= 1)
        read_eof = count - unread
        oldest = max(lows) if lows else None
        oldest_hi = max(highs) if highs else None
        med = median(lows)
        peers = Counter(s.peer_addr for s in stuck)
        ports = Counter(s.local_port for s in stuck)
        evidence = [
            ev("close_wait_sockets", count, SOCK_DIAG,
               f"CLOSE_WAIT for at least {seconds(stuck_age)}; {len(group)} in CLOSE_WAIT in all"),
            ev("recv_q_ge_1", unread, SOCK_DIAG, "has not read EOF (Recv-Q >= 1)"),
            ev("recv_q_0", read_eof, SOCK_DIAG, "read EOF but never called close() (Recv-Q 0)"),
        ]
        if oldest is not None and oldest_hi is not None and med is not None:  # all three or none
            evidence += [
                ev("oldest_age_s", round(oldest), TCP_INFO,
                   "lower bound: last_ack_recv (the FIN's ACK; a later ACK resets it); "
                   f"upper bound {round(oldest_hi)} s from last_data_recv"),
                ev("median_age_s", round(med), TCP_INFO, "lower bound, last_ack_recv"),
            ]
        if no_info:
            evidence.append(ev("undated_sockets", no_info, SOCK_DIAG,
                               "no tcp_info (procfs fallback): age unknown"))
        evidence += [ev("peers", top(peers), SOCK_DIAG, "peer address, count"),
                     ev("local_ports", top(ports), SOCK_DIAG, "local port, count")]

        # growth and time to RLIMIT_NOFILE
        rate, rate_note = None, ""
        if ctx.history is not None and pid is not None:
            pts = ctx.history.points(pid, "close_wait")
            if len(pts) >= 2:
                rate = slope_per_s(pts + [(ctx.now, len(group))])
                rate_note = f"least-squares over {len(pts) + 1} samples ({ctx.history.source})"
        if rate is None and len(lows) >= 3 and max(lows) - min(lows) >= MIN_SPREAD_S:
            rate = (len(lows) - 1) / (max(lows) - min(lows))
            rate_note = ("estimated from the spread of socket ages (lower bounds): "
                         "sockets still in CLOSE_WAIT per second over that span")
        limits = hf.processes.get(pid) if hf is not None and pid is not None else None
        eta = None
        if rate is not None:
            evidence.append(ev("close_wait_growth_per_hour", round(rate * 3600, 1),
                               "history" if "samples" in rate_note else TCP_INFO, rate_note))
        if limits is not None:
            evidence.append(ev("fds_open", limits.fd_count, "/proc/PID/fd"))
            if limits.nofile_soft != UNLIMITED:
                evidence.append(ev("rlimit_nofile_soft", limits.nofile_soft, "/proc/PID/limits"))
                if rate is not None and rate > 0:
                    eta = max(0.0, (limits.nofile_soft - limits.fd_count) / rate)
                    evidence.append(ev("seconds_to_rlimit_nofile", round(eta), "projection",
                                       "at the growth above, every leaked socket one fd"))
        fd_ratio = (limits.fd_count / limits.nofile_soft
                    if limits is not None and limits.nofile_soft not in (UNLIMITED, 0) else 0)

        if count >= CRITICAL_COUNT or (eta is not None and eta < CRITICAL_ETA_S) \
                or fd_ratio >= FD_CRITICAL_RATIO:
            severity = "critical"
        elif count >= WARN_COUNT or (oldest is not None and oldest >= old_age):
            severity = "warning"
        else:
            severity = "info"

        title = f"{who(pid, comm)} holds {plural(count, 'CLOSE_WAIT socket')}"
        if oldest is not None:
            title += f", oldest {seconds(oldest)}"
        if eta is not None:
            title += f"; RLIMIT_NOFILE in ~{seconds(eta)}"
        fixes = []
        if pid is not None:
            fixes.append(kill_fix(f"state close-wait pid {pid}",
                                  "frees the TCP state now (RST to each peer); the fds stay "
                                  "open until the process closes them - restart it if they "
                                  "matter"))
            if limits is not None and limits.nofile_soft != UNLIMITED:
                hard = limits.nofile_hard
                soft = hard if hard != UNLIMITED else limits.nofile_soft * 4
                if soft > limits.nofile_soft:
                    fixes.append(prlimit_fix(pid, soft, why="buys time only: raises the soft "
                                             "fd limit (up to the hard limit)"))
        fixes.append(code_fix(
            "close the socket on every path after recv() returns 0 or an error "
            "(try/finally, `with`, defer conn.Close()); " +
            ("most of these have unread data (Recv-Q >= 1): find where the process stops "
             "reading - a blocked worker, a connection dropped from a pool without close()"
             if unread > read_eof else
             "most read EOF (Recv-Q 0): look for an early return after EOF or an error "
             "that skips close()")))
        findings.append(Finding(
            id="close-wait-leak", severity=severity, cause=CAUSE, title=title,
            subject=subject(netns, pid, comm, ports.most_common(1)[0][0] if len(ports) == 1 else None),
            evidence=evidence, fixes=fixes, why=WHY_CLOSE_WAIT))
    return findings


WHY_FD_LEAK = (
    "These file descriptors are TCP sockets whose connection is gone: the socket is in no "
    "socket table of any network namespace and was shut down in both directions (poll "
    "reports POLLHUP and POLLRDHUP) - the kernel closed the connection under the "
    "application (an RST from the peer, keepalive or tcp_retries2 giving up, or "
    "SOCK_DESTROY) and the application has not called close(). A socket that was "
    "created and never connected is not counted: it is not shut down. The connection "
    "state is freed; the descriptor and the socket object are not, and they count "
    "against RLIMIT_NOFILE. This is where a CLOSE_WAIT leak goes when keepalive or a kill "
    "ends it. Only closing the fd frees it: fix the code, or restart the process."
)


def check_fd_leak(ctx: Context) -> list[Finding]:
    hf = ctx.facts
    reason = ctx.unavailable("socket-tables")
    if reason and not hf.stale_socket_fds:
        raise Unavailable(f"socket tables not read: {reason}")
    findings = []
    for entry in hf.stale_socket_fds:
        if not ctx.in_scope(entry.pid, entry.netns):
            continue  # a process outside the namespaces being checked
        tcp_all = [f for f in entry.fds if f.protocol.upper().startswith("TCP")]
        tcp = [f for f in tcp_all if f.hup is True]
        unchecked = sum(1 for f in tcp_all if f.hup is None)
        if not tcp:
            continue
        growth = None
        if ctx.history is not None:
            pts = ctx.history.points(entry.pid, "stale_tcp_fds")
            if len(pts) >= 2:
                growth = slope_per_s(pts + [(ctx.now, len(tcp))])
        severity = "warning" if len(tcp) >= FD_LEAK_WARN or (growth or 0) > 0 else "info"
        limits = hf.processes.get(entry.pid)
        evidence = [ev("stale_tcp_socket_fds", len(tcp), "/proc/PID/fd",
                       "TCP socket fds in no socket table of any namespace, shut down both "
                       "ways (POLLHUP|POLLRDHUP)"),
                    ev("fds", [f.fd for f in tcp[:20]], "/proc/PID/fd", "first 20")]
        never_connected = sum(1 for f in tcp_all if f.hup is False)
        if never_connected:
            evidence.append(ev("not_shut_down_socket_fds", never_connected, "/proc/PID/fd",
                               "in no table but not shut down (never connected): not counted"))
        if unchecked:
            evidence.append(ev("unchecked_socket_fds", unchecked, "/proc/PID/fd",
                               "in no table; shutdown not readable (pidfd_getfd): not counted"))
        if growth is not None:
            evidence.append(ev("growth_per_hour", round(growth * 3600, 1), "history"))
        if limits is not None:
            evidence.append(ev("fds_open", limits.fd_count, "/proc/PID/fd"))
            if limits.nofile_soft != UNLIMITED:
                evidence.append(ev("rlimit_nofile_soft", limits.nofile_soft, "/proc/PID/limits"))
        findings.append(Finding(
            id="fd-leak", severity=severity, cause=CAUSE,
            title=f"{who(entry.pid, entry.comm)} keeps {plural(len(tcp), 'fd')} on TCP "
                  "sockets the kernel already closed",
            subject=subject(entry.netns, entry.pid, entry.comm),
            evidence=evidence,
            fixes=[code_fix("close the socket when a read or write fails with ECONNRESET, "
                            "ETIMEDOUT, EPIPE or ECONNABORTED, not only on EOF"),
                   restart_fix(entry.pid, entry.comm)],
            why=WHY_FD_LEAK))
    return findings


def restart_fix(pid: int, comm: str) -> Fix:
    return Fix("restart", f"systemctl restart {comm}.service   # or however {comm} (pid {pid}) "
               "is managed", False, {"pid": pid},
               "the only way to free descriptors another process leaks")


