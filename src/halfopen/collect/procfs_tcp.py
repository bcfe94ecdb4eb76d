"""The fallback: Socket records from /proc/net/tcp and /proc/net/tcp6.

Format: net/ipv4/tcp_ipv4.c get_tcp4_sock(), get_openreq4(), get_timewait4_sock()
(and tcp_ipv6.c). Addresses are __be32 words printed with %08X in host
order; tm->when is in clock ticks (USER_HZ = 100). The file has no cookie,
no tcp_info, no shutdown bits, and a LISTEN socket's Send-Q is 0 there, not
its backlog.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator

from ..model.socket import Socket

USER_HZ = 100


def parse_address(text: str) -> tuple[str, int]:
    """Decode a hex address:port as /proc/net/tcp prints it on little-endian hosts.

    >>> parse_address("0500000A:0016")
    ('10.0.0.5', 22)
    >>> parse_address("00000000000000000000000001000000:01BB")
    ('::1', 443)
    """
    addr_hex, port_hex = text.split(":")
    raw = bytes.fromhex(addr_hex)
    # each 32-bit word was printed as a host-order integer
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port_hex, 16)


def parse_line(line: str, family: int, netns: str = "host") -> Socket:
    """One data line of /proc/net/tcp{,6} -> Socket (cookie 0: not shown there)."""
    f = line.split()
    local_addr, local_port = parse_address(f[1])
    peer_addr, peer_port = parse_address(f[2])
    tx, rx = f[4].split(":")
    timer, when = f[5].split(":")
    return Socket(
        family=family, state=int(f[3], 16),
        local_addr=local_addr, local_port=local_port,
        peer_addr=peer_addr, peer_port=peer_port,
        recv_q=int(rx, 16), send_q=int(tx, 16),
        timer=int(timer, 16), timer_expires_ms=int(when, 16) * 1000 // USER_HZ,
        # retrnsmt column for the retransmit timer, probes (timeout column) otherwise
        timer_retrans=int(f[6], 16) if int(timer, 16) in (0, 1, 3) else int(f[8]),
        uid=int(f[7]), inode=int(f[9]), cookie=0, netns=netns)


def parse_table(lines: Iterable[str], family: int, netns: str = "host",
                path: str = "/proc/net/tcp") -> Iterator[Socket]:
    """Parse a whole table, header included; a malformed line names itself."""
    it = iter(lines)
    next(it, None)  # header
    for number, line in enumerate(it, start=2):
        try:
            yield parse_line(line, family, netns)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{path}:{number}: cannot parse {line.strip()!r}: {exc}") from exc


def read_sockets(proc_net: str = "/proc/thread-self/net", netns: str = "host",
                 families: tuple[int, ...] = (4, 6)) -> Iterator[Socket]:
    """Every TCP socket of the namespace behind `proc_net`."""
    for family in families:
        path = f"{proc_net}/tcp" if family == 4 else f"{proc_net}/tcp6"
        try:
            with open(path) as f:
                yield from parse_table(f, family, netns, path)
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
