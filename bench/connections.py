"""Hold N real loopback connections open, half of them half-closed.

Run as a worker: `python3 bench/connections.py WORKER_INDEX COUNT`. It listens
on 127.<i>.0.2, connects COUNT clients from 127.<i>.0.1, and shuts down the
write side of every second client: that client sits in FIN_WAIT2 and its
server end in CLOSE_WAIT, both held open by this process. It prints "ready"
and waits until stdin closes. Connections stay on loopback.
"""

from __future__ import annotations

import socket
import sys


def main() -> None:
    index, count = int(sys.argv[1]), int(sys.argv[2])
    server_addr = (f"127.{index}.0.2", 0)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(server_addr)
    listener.listen(4096)
    target = listener.getsockname()
    held = []
    for n in range(count):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.bind((f"127.{index}.0.1", 0))
        client.connect(target)
        server, _ = listener.accept()
        if n % 2:
            client.shutdown(socket.SHUT_WR)  # -> FIN_WAIT2 / CLOSE_WAIT
        held.append((client, server))
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
