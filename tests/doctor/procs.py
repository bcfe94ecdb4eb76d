"""Small real processes for the doctor's live tests, run as `python3 procs.py MODE ...`.

Each prints "ready" on stdout once its sockets are in the state the test wants,
then sleeps until killed.

    leak-server ADDR PORT N      listen ("ready"), accept N, never read, never close
    tiny-backlog ADDR PORT       listen(backlog=1), never accept
    connect ADDR PORT N [SRC]    open N connections (non-blocking), send b"x", close them
    hold ADDR PORT N [SRC]       open N connections and keep them idle
    fds ADDR PORT N              listen, then open N extra fds (/dev/null)
    send-server ADDR PORT FILE   listen ("ready"), accept one, wait for FILE to exist, send 64 KiB, sleep
    idle-server ADDR PORT N      listen ("ready"), accept N, keep them idle, no keepalive
    keepalive-server ADDR PORT N IDLE INTVL CNT
                                 as idle-server, with SO_KEEPALIVE and TCP_KEEPIDLE/INTVL/CNT
                                 set on each accepted socket (as redis's tcp-keepalive does)
    fresh-socket ADDR PORT       hold a TCP socket() never bound or connected ("ready")
    send-client ADDR PORT FILE SRC  connect from SRC ("ready"), wait for FILE to exist, send 64 KiB
    backlog ADDR PORT N          listen(backlog=N), never accept ("ready")
    syn-flood ADDR PORT N M      raw SYNs from spoofed 198.19.x.y sources, one each, 1000/s:
                                 "ready" after N, stop after M in all
    pool ADDR PORT N [FDS]       a urllib3 pool: N concurrent GETs leave N pooled connections;
                                 "ready" once the server closed all N (CLOSE_WAIT), after
                                 opening /dev/null fds up to FDS open fds when given
"""

from __future__ import annotations

import os
import socket
import sys
import time

SYN_SOURCES = "198.19.{}.{}"  # spoofed, inside 198.18.0.0/15; routed to a dummy link
SYN_RATE = 1000  # per second
SYN_BATCH = 10
CLOSE_WAIT_HEX = "08"
POOL_WAIT_S = 15.0
CLIENT = "198.18.0.2"  # doctor_support.CLIENT: the pool connects from it


def ready() -> None:
    print("ready", flush=True)


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def listener(addr: str, port: int, backlog: int = 128) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(backlog)
    return s


def client(addr: str, port: int, src: str | None) -> socket.socket:
    c = socket.socket()
    if src:
        c.bind((src, 0))
    c.settimeout(5)
    c.connect((addr, port))
    return c


def main(argv: list[str]) -> None:
    mode, addr, port = argv[0], argv[1], int(argv[2])
    if mode == "leak-server":
        s = listener(addr, port)
        ready()
        kept = [s.accept()[0] for _ in range(int(argv[3]))]
        sleep_forever()
    elif mode == "tiny-backlog":
        s = listener(addr, port, 1)
        ready()
        sleep_forever()
    elif mode == "connect":
        src = argv[4] if len(argv) > 4 else None
        for _ in range(int(argv[3])):
            c = client(addr, port, src)
            c.sendall(b"x")
            c.close()
        ready()
    elif mode == "hold":
        src = argv[4] if len(argv) > 4 else None
        kept = []
        for _ in range(int(argv[3])):
            c = socket.socket()
            if src:
                c.bind((src, 0))
            c.setblocking(False)
            try:
                c.connect((addr, port))
            except BlockingIOError:
                pass
            kept.append(c)
        time.sleep(0.3)
        ready()
        sleep_forever()
    elif mode == "fds":
        s = listener(addr, port)
        kept = [open(os.devnull) for _ in range(int(argv[3]))]  # noqa: SIM115 - held until killed
        ready()
        sleep_forever()
    elif mode == "send-server":
        s = listener(addr, port)
        ready()
        send_when(s.accept()[0], argv[3])
    elif mode == "idle-server":
        s = listener(addr, port)
        ready()
        kept = [s.accept()[0] for _ in range(int(argv[3]))]
        sleep_forever()
    elif mode == "keepalive-server":
        s = listener(addr, port)
        ready()
        kept = [s.accept()[0] for _ in range(int(argv[3]))]
        for c in kept:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for opt, value in zip((socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT),
                                  argv[4:7]):
                c.setsockopt(socket.IPPROTO_TCP, opt, int(value))
        sleep_forever()
    elif mode == "fresh-socket":
        kept = socket.socket()
        ready()
        sleep_forever()
    elif mode == "send-client":
        c = client(addr, port, argv[4])
        ready()
        send_when(c, argv[3])
    elif mode == "backlog":
        s = listener(addr, port, int(argv[3]))
        ready()
        sleep_forever()
    elif mode == "syn-flood":
        syn_flood(addr, port, int(argv[3]), int(argv[4]))
    elif mode == "pool":
        kept = pool(addr, port, int(argv[3]), int(argv[4]) if len(argv) > 4 else 0)
        ready()
        sleep_forever()
    else:
        raise SystemExit(f"unknown mode {mode}")


def send_when(conn: socket.socket, trigger: str) -> None:
    """Once `trigger` exists, queue 64 KiB without blocking, then hold the socket."""
    while not os.path.exists(trigger):
        time.sleep(0.05)
    conn.setblocking(False)
    try:
        conn.send(b"y" * 65536)
    except BlockingIOError:
        pass
    sleep_forever()


def syn_flood(addr: str, port: int, first: int, total: int) -> None:
    """A steady flood of SYN_RATE SYNs/s, one spoofed source each, `total` SYNs at most.

    Steady, not one burst: requests in a full SYN queue live ~7 s (reqsk_timer_handler
    cuts old ones to 2 SYN-ACK retries), and a burst would expire all at once; SYNs
    arriving faster than the queue drains keep it full whenever the doctor looks.
    """
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sockets"))
    from puppet import raw_syn  # noqa: PLC0415 - the sockets tests' raw SYN builder
    for i in range(total):
        if i == first:
            ready()  # the queue has had `first` SYNs: full for any backlog below that
        if i % SYN_BATCH == 0:
            time.sleep(SYN_BATCH / SYN_RATE)
        raw_syn(SYN_SOURCES.format(i // 250, i % 250 + 1), addr, port)
    sleep_forever()


def pool(addr: str, port: int, n: int, fds: int) -> object:
    """A real urllib3 pool left holding n idle connections; waits until the server closed them."""
    import urllib3  # noqa: PLC0415 - only this mode needs it

    p = urllib3.HTTPConnectionPool(addr, port, maxsize=n, block=False, retries=False,
                                   source_address=(CLIENT, 0))
    # n responses not yet read hold n connections at once; reading and releasing them
    # returns all n to the pool, idle, as after a burst of concurrent requests
    held = [p.urlopen("GET", "/", preload_content=False) for _ in range(n)]
    for r in held:
        r.read()
        r.release_conn()
    assert p.pool.qsize() == n, p.pool.qsize()
    extra = []
    while fds and len(os.listdir("/proc/self/fd")) < fds:
        extra.append(open(os.devnull))  # noqa: SIM115 - held open on purpose
    deadline = time.monotonic() + POOL_WAIT_S
    while _close_wait_to(port) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"the server did not close the pool's {n} connections")
        time.sleep(0.1)
    return p, extra


def _close_wait_to(port: int) -> int:
    """CLOSE_WAIT sockets to `port` in this namespace (only ours are clients of it)."""
    with open("/proc/self/net/tcp") as f:
        next(f)
        return sum(1 for line in f if line.split()[3] == CLOSE_WAIT_HEX
                   and int(line.split()[2].split(":")[1], 16) == port)


if __name__ == "__main__":
    main(sys.argv[1:])
