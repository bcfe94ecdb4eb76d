"""SOCK_DESTROY the sockets a filter named, and say what became of each.

The request names one socket by its 4-tuple and cookie (sock_diag.
build_destroy_request), so a new connection that reuses the addresses is not
touched: the kernel answers ESTALE (sock_diag_check_cookie). The kernel sends
RST for ESTABLISHED and CLOSE_WAIT and frees the TCP state (tcp_abort); the
owner's fd stays open and its next call fails with ECONNABORTED.

Answers (net/core/sock_diag.c, net/ipv4/inet_diag.c):
    0           killed
    ENOENT      already gone
    ESTALE      already gone: the addresses now belong to a new connection
    EPERM       not permitted: needs CAP_NET_ADMIN in the socket's namespace
    EOPNOTSUPP  the kernel was built without CONFIG_INET_DIAG_DESTROY
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

from halfopen.records import record

from ..collect import netns
from ..kernel import netlink, sock_diag
from ..model.socket import Socket

RESULTS = {
    0: "killed",
    errno.ENOENT: "already gone",
    errno.ESTALE: "already gone",
    errno.EPERM: "not permitted",
    errno.EACCES: "not permitted",
    errno.EOPNOTSUPP: "not supported",
}
REASONS = {
    errno.ESTALE: "its addresses now belong to a new connection, which was left alone",
    errno.EPERM: "SOCK_DESTROY needs CAP_NET_ADMIN in the socket's network namespace",
    errno.EACCES: "SOCK_DESTROY needs CAP_NET_ADMIN in the socket's network namespace",
    errno.EOPNOTSUPP: "the kernel was built without CONFIG_INET_DIAG_DESTROY",
}
DONE = ("killed", "already gone")


@record
class Outcome:
    sock: Socket
    result: str  # a RESULTS value, "would kill", or "failed"
    errno: int = 0
    reason: str = ""

    def to_dict(self) -> dict:
        d = self.sock.to_dict()
        d["result"] = self.result
        if self.errno:
            d["errno"] = errno.errorcode.get(self.errno, str(self.errno))
        if self.reason:
            d["reason"] = self.reason
        return d


def outcome(sock: Socket, code: int) -> Outcome:
    return Outcome(sock, RESULTS.get(code, "failed"), code,
                   REASONS.get(code, "" if code in RESULTS else os.strerror(code)))


def destroy(targets: Iterable[Socket], spaces: dict[str, netns.Namespace],
            proc: str = "/proc") -> list[Outcome]:
    """SOCK_DESTROY each socket from a netlink socket inside its own namespace."""
    by_ns: dict[str, list[Socket]] = {}
    for sock in targets:
        by_ns.setdefault(sock.netns, []).append(sock)
    outcomes = []
    for name, socks in by_ns.items():
        with netns.entered(spaces[name], proc):
            nl = netlink.open_sock_diag()
        with nl:
            for sock in socks:
                code = netlink.request_ack(nl, sock_diag.build_destroy_request(sock))
                outcomes.append(outcome(sock, code))
    return outcomes
