"""Two processes with names of their own, for counting by process identity.

    python named_peers.py server COMM          prints its port; accepts connections;
                                               closes each 0.3 s after the peer's FIN,
                                               at once after its reset
    python named_peers.py client COMM PORT N K opens N + K connections, prints "open";
                                               on a line "go" closes N with a FIN and
                                               K with SO_LINGER 0 (a reset), prints "done"

Both set their comm (prctl PR_SET_NAME), so the exporter's identity of each is theirs
alone on a busy host. Both run until their stdin closes.
"""

import ctypes
import selectors
import socket
import struct
import sys
import time

PR_SET_NAME = 15


def name(comm: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NAME, comm.encode(), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")


def server() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    due: list[tuple[float, socket.socket]] = []
    while True:
        for key, _ in sel.select(0.05):
            if key.fileobj is sys.stdin:
                return
            if key.fileobj is listener:
                sel.register(listener.accept()[0], selectors.EVENT_READ)
                continue
            conn = key.fileobj
            try:
                data = conn.recv(1)
            except ConnectionResetError:
                sel.unregister(conn)
                conn.close()
                continue
            if data == b"":  # the peer's FIN
                sel.unregister(conn)
                due.append((time.monotonic() + 0.3, conn))
        now = time.monotonic()
        for when, conn in [d for d in due if d[0] <= now]:
            due.remove((when, conn))
            conn.close()


def client(port: int, n: int, k: int) -> None:
    fins = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    resets = [socket.create_connection(("127.0.0.1", port)) for _ in range(k)]
    print("open", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    for c in fins:
        c.close()
    for c in resets:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    print("done", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    name(sys.argv[2])
    if sys.argv[1] == "server":
        server()
    else:
        client(int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
