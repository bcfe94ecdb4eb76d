"""A process that leaks CLOSE_WAIT sockets: it connects to itself, the client
side closes, the accepted side is never closed.

    python3 leaker.py [--initial N] [--rate PER_S] [--max N]

Prints "ready PORT" once the initial sockets leak, then leaks `rate` more per
second up to `max`. Its comm is "leaker". Runs until killed.
"""

import argparse
import ctypes
import socket
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--initial", type=int, default=10)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--max", type=int, default=1000)
    a = ap.parse_args()
    ctypes.CDLL(None).prctl(15, b"leaker", 0, 0, 0)  # PR_SET_NAME
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1024)
    port = srv.getsockname()[1]
    kept = []

    def leak() -> None:
        c = socket.create_connection(("127.0.0.1", port))
        s, _ = srv.accept()
        c.close()  # our FIN: s goes to CLOSE_WAIT and stays there
        kept.append(s)

    for _ in range(a.initial):
        leak()
    print(f"ready {port}", flush=True)
    start = time.monotonic()
    while True:
        if a.rate > 0 and len(kept) < a.max:
            due = a.initial + int((time.monotonic() - start) * a.rate)
            while len(kept) < min(due, a.max):
                leak()
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
