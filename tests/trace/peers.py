"""A TCP server for the trace tests, run as its own process (its pid is the owner).

    python peers.py COUNT MODE     MODE: close (close() each socket 0.3 s after the
                                   peer's FIN) or leak (never close one)

Prints its port, accepts COUNT connections, and waits until its stdin closes.
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


if __name__ == "__main__":
    main()
