"""A TCP server for the trace tests, run as its own process (its pid is the owner).

    python peers.py COUNT MODE     MODE: close (close() each socket 0.3 s after the
                                   peer's FIN), leak (never close one), or abort
                                   (close each HOLD_S after data came, unread: the
                                   kernel resets it, TCP_ABORT_ON_CLOSE)

Prints its port, accepts COUNT connections (abort: any number, until its stdin
closes), and waits until its stdin closes.
"""

import selectors
import socket
import sys
import threading
import time


def main() -> None:
    count, mode = int(sys.argv[1]), sys.argv[2]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(count)
    print(listener.getsockname()[1], flush=True)
    if mode == "abort":
        threading.Thread(target=_abort_each, args=(listener,), daemon=True).start()
        sys.stdin.read()
        return
    conns = [listener.accept()[0] for _ in range(count)]
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c, selectors.EVENT_READ)
    ended = 0
    while ended < count:
        for key, _ in sel.select():
            if key.fileobj.recv(1) == b"":  # the peer's FIN
                sel.unregister(key.fileobj)
                ended += 1
                if mode == "close":
                    threading.Timer(0.3, key.fileobj.close).start()
    print("ended", flush=True)
    sys.stdin.read()  # hold the leaked sockets until the test is done
    time.sleep(0)


HOLD_S = 2.5  # an aborted connection lives this long: the tracer's owner lookup sees it


def _abort_each(listener: socket.socket) -> None:
    while True:
        conn = listener.accept()[0]
        threading.Thread(target=_abort, args=(conn,), daemon=True).start()


def _abort(conn: socket.socket) -> None:
    with selectors.DefaultSelector() as sel:
        sel.register(conn, selectors.EVENT_READ)
        sel.select(5)  # data came
    time.sleep(HOLD_S)
    conn.close()  # data unread: RST, not FIN (tcp_close)


if __name__ == "__main__":
    main()
