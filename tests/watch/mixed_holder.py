"""Hold loopback connections in a mix of states, for tests/watch/test_tally.py.

`python3 mixed_holder.py COUNT [--fork]` listens on 127.0.0.1 and on ::1 when
the namespace has it (and on 127.0.0.1 for connections never accepted), and makes COUNT connections, by n % 5:
0 established, 1 client half-closed (FIN_WAIT2 / CLOSE_WAIT, both held),
2 server end closed (an orphan FIN_WAIT2, the client in CLOSE_WAIT),
3 client closed first (TIME_WAIT), 4 left in the accept queue (no inode);
every tenth held pair's server fds are dup()ed too (one socket, two fds).
With --fork a child holds every fd as well (sockets of two processes).
It prints "ready", then on stdin:
  "swap N": closes N held pairs and opens new connections on the same fd
            numbers (dup2): sockets the owner cache cannot know from a listing;
  an empty line or end of input: exit.
"""

from __future__ import annotations

import os
import resource
import socket
import sys


def connect(family: int, target) -> socket.socket:
    client = socket.socket(family, socket.SOCK_STREAM)
    client.connect(target)
    return client


def main() -> None:
    count = int(sys.argv[1])
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listeners = []
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind((addr, 0))
        except OSError:
            continue
        s.listen(4096)
        listeners.append(s)
    # kind 4 connects to a listener of its own that never accepts: accept() on the
    # others then returns the connection just made (the queue is FIFO)
    waiting = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    waiting.bind(("127.0.0.1", 0))
    waiting.listen(4096)
    held: list[tuple[socket.socket, socket.socket]] = []
    extra = []
    for n in range(count):
        kind = n % 5
        if kind == 4:
            extra.append(connect(socket.AF_INET, waiting.getsockname()))  # its server end
            continue  # waits in the accept queue
        lst = listeners[n % len(listeners)]
        client = connect(lst.family, lst.getsockname()[:2])
        server, _ = lst.accept()
        if kind == 1:
            client.shutdown(socket.SHUT_WR)
        elif kind == 2:
            server.close()
            extra.append(client)
            continue
        elif kind == 3:
            client.close()
            server.close()
            continue
        held.append((client, server))
        if len(held) % 10 == 0:
            extra.append(os.dup(server.fileno()))
    if "--fork" in sys.argv:
        r, w = os.pipe()
        if os.fork() == 0:  # holds every fd until the parent exits (its pipe end closes)
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        os.close(r)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            break
        if words[0] == "swap":
            for client, server in held[:int(words[1])]:
                lst = listeners[0]
                new_client = connect(lst.family, lst.getsockname()[:2])
                new_server, _ = lst.accept()
                os.dup2(new_client.fileno(), client.fileno())
                os.dup2(new_server.fileno(), server.fileno())
                new_client.close()
                new_server.close()
            print("done", flush=True)


if __name__ == "__main__":
    main()
