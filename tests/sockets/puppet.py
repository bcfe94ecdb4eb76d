"""A socket puppet: a separate process that makes and holds TCP sockets on command.

Run as `python3 puppet.py NAME` (inside a namespace with `ip netns exec`); it
sets its comm to NAME, prints "ready PID", then reads one command per line on
stdin and answers one line on stdout: "ok ..." or "err ...".

    listen ADDR [BACKLOG]     -> ok FD PORT
    connect ADDR PORT [nb]    -> ok FD LOCALPORT   (nb: non-blocking, SYN may stay unanswered)
    accept FD                 -> ok FD PEERPORT
    send FD N                 -> ok N
    recv FD                   -> ok N               (reads what is queued, non-blocking)
    shut FD                   -> ok                 (shutdown(SHUT_WR): our FIN)
    close FD                  -> ok
    keepalive FD              -> ok
    rawsyn SRC DST PORT       -> ok SPORT           (a bare SYN from SRC, via a raw socket)
"""

from __future__ import annotations

import ctypes
import os
import random
import socket
import struct
import sys

PR_SET_NAME = 15
socks: dict[int, socket.socket] = {}


def family_of(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def raw_syn(src: str, dst: str, dport: int) -> int:
    """Send one SYN from `src` (an address nobody answers for) to dst:dport."""
    fam = family_of(dst)
    sport = random.randint(20000, 60000)
    seq = random.getrandbits(32)
    s_raw, d_raw = socket.inet_pton(fam, src), socket.inet_pton(fam, dst)
    # TCP header with one MSS option: data offset 6 words, flags SYN
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 6 << 4, 0x02, 65535, 0, 0)
    tcp += struct.pack("!BBH", 2, 4, 1400)
    if fam == socket.AF_INET:
        pseudo = s_raw + d_raw + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    else:
        pseudo = s_raw + d_raw + struct.pack("!I3xB", len(tcp), socket.IPPROTO_TCP)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    if fam == socket.AF_INET:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64,
                         socket.IPPROTO_TCP, 0, s_raw, d_raw)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), socket.IPPROTO_TCP, 64,
                         s_raw, d_raw)
    with socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + tcp, (dst, 0))
    return sport


def handle(words: list[str]) -> str:
    cmd, args = words[0], words[1:]
    if cmd == "listen":
        s = socket.socket(family_of(args[0]), socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((args[0], 0))
        s.listen(int(args[1]) if len(args) > 1 else 16)
        socks[s.fileno()] = s
        return f"ok {s.fileno()} {s.getsockname()[1]}"
    if cmd == "connect":
        s = socket.socket(family_of(args[0]), socket.SOCK_STREAM)
        if len(args) > 2 and args[2] == "nb":
            s.setblocking(False)
            err = s.connect_ex((args[0], int(args[1])))
            if err not in (0, 115):  # EINPROGRESS
                return f"err connect {os.strerror(err)}"
        else:
            s.settimeout(5)
            s.connect((args[0], int(args[1])))
        socks[s.fileno()] = s
        return f"ok {s.fileno()} {s.getsockname()[1]}"
    s = socks.get(int(args[0])) if args and args[0].isdigit() else None
    if cmd == "accept":
        s.settimeout(5)
        c, peer = s.accept()
        socks[c.fileno()] = c
        return f"ok {c.fileno()} {peer[1]}"
    if cmd == "send":
        return f"ok {s.send(b'x' * int(args[1]))}"
    if cmd == "recv":
        try:
            return f"ok {len(s.recv(1 << 20, socket.MSG_DONTWAIT))}"
        except BlockingIOError:
            return "ok 0"
    if cmd == "shut":
        s.shutdown(socket.SHUT_WR)
        return "ok"
    if cmd == "close":
        socks.pop(int(args[0])).close()
        return "ok"
    if cmd == "keepalive":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return "ok"
    if cmd == "rawsyn":
        return f"ok {raw_syn(args[0], args[1], int(args[2]))}"
    return f"err unknown command {cmd}"


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "puppet"
    ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    print(f"ready {os.getpid()}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            answer = handle(words)
        except Exception as exc:  # answer the test, keep serving
            answer = f"err {type(exc).__name__}: {exc}"
        print(answer, flush=True)


if __name__ == "__main__":
    main()
