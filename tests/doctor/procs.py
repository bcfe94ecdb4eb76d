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
    fresh-socket ADDR PORT       hold a TCP socket() never bound or connected ("ready")
"""

from __future__ import annotations

import os
import socket
import sys
import time


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
        conn, _ = s.accept()
        while not os.path.exists(argv[3]):
            time.sleep(0.05)
        conn.setblocking(False)
        try:
            conn.send(b"y" * 65536)
        except BlockingIOError:
            pass
        sleep_forever()
    elif mode == "idle-server":
        s = listener(addr, port)
        ready()
        kept = [s.accept()[0] for _ in range(int(argv[3]))]
        sleep_forever()
    elif mode == "fresh-socket":
        kept = socket.socket()
        ready()
        sleep_forever()
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
