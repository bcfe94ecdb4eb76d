"""Synthetic samples for tests that need exact numbers (growth, retention, reports)."""

from __future__ import annotations

from halfopen.model.finding import Evidence, Finding
from halfopen.model.subject import Subject
from halfopen.watch.hostfacts import HostStats
from halfopen.watch.sample import Listener, ProcSample, Sample


def make(t: float, close_wait: int = 0, fds: int | None = None, fd_limit: int = 1024,
         pid: int = 4242, comm: str = "leaky", findings: list[Finding] | None = None,
         counter: int = 0, cookies: dict | None = None) -> Sample:
    p = ProcSample(pid, comm, fds if fds is not None else close_wait + 10, fd_limit,
                   {"close_wait": close_wait, "listen": 1} if close_wait else {"listen": 1})
    other = ProcSample(7, "sshd", 12, 1024, {"established": 2, "listen": 1})
    return Sample(
        t=t, host="testhost",
        states={("host", "close_wait"): close_wait, ("host", "established"): 2,
                ("host", "listen"): 2, ("host", "time_wait"): int(t) % 5},
        processes={pid: p, 7: other},
        listeners=[Listener("host", "0.0.0.0", 8080, 3, 128, 1, pid, comm)],
        facts=HostStats(100 + int(t) % 7, 262144, 2000 + close_wait, 100000,
                        {"TcpExt.ListenOverflows": counter, "Tcp.OutRsts": counter * 2}),
        close_wait=cookies or {}, findings=findings)


def finding(pid: int = 4242, severity: str = "critical") -> Finding:
    return Finding("close-wait-leak", severity, "application does not close",
                   f"leaky (pid {pid}) holds CLOSE_WAIT sockets",
                   Subject("host", pid, "leaky", 8080),
                   [Evidence("close_wait_sockets", 10, "sock_diag")])
