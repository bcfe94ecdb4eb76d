"""A test server holding both ends of N connections over lo, driven over stdin.

    python3 peer.py N [--close]        (run inside the test's namespace)

Prints one JSON line: {"pid", "port", "fds" (server-side fds), "clients" (ports)}.
With --close the client ends are closed, so the server ends sit in CLOSE_WAIT.
Commands, one per line, each answered by one JSON line:
    nodump          prctl(PR_SET_DUMPABLE, 0): ptrace access now needs CAP_SYS_PTRACE
    send            try send() on each server end: {"errnos": [0 | errno, ...]}
    wait SECONDS    block until each server end reports an error: {"errnos": [...]}
    quit
"""

import errno
import json
import select
import socket
import sys
import time

count = int(sys.argv[1])
close_clients = "--close" in sys.argv
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(count)
port = listener.getsockname()[1]
clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
servers = [listener.accept()[0] for _ in range(count)]
client_ports = [c.getsockname()[1] for c in clients]
if close_clients:
    for c in clients:
        c.close()


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def error_of(sock):
    try:
        sock.send(b"x")
        return 0
    except OSError as exc:
        return exc.errno


def wait_error(sock, deadline):
    while time.monotonic() < deadline:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return err
        readable, _w, _x = select.select([sock], [], [], 0.2)
        if readable:
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return -1  # EOF, no error
            except OSError as exc:
                return exc.errno
    return errno.EAGAIN


say({"pid": __import__("os").getpid(), "port": port, "fds": [s.fileno() for s in servers],
     "clients": client_ports})
for line in sys.stdin:
    words = line.split()
    if not words or words[0] == "quit":
        break
    if words[0] == "nodump":
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
        say({"ok": True})
    elif words[0] == "send":
        say({"errnos": [error_of(s) for s in servers]})
    elif words[0] == "wait":
        deadline = time.monotonic() + float(words[1])
        say({"errnos": [wait_error(s, deadline) for s in servers]})
