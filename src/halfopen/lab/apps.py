"""Small servers the lab runs inside its namespaces, one process each.

    python3 -m halfopen.lab.apps --port 8080 --mode leak [--backlog 16] [--nofile 64]

Each prints JSON lines on stdout ({"event": "ready", "pid": ...} first) and
takes commands on stdin, one a line:

    write TEXT   send TEXT on every open connection
    fast         (mode slow) raise the backlog and accept as fast as possible
    count        print {"event": "count", "open": N, "fds": N}
    quit         exit

Modes (what each server does wrong, on purpose):
    leak        read until EOF, never close            -> CLOSE_WAIT, fd growth
    hold        answer one line, then keep the connection idle; report errors
    slow        accept one connection every 2 s         -> full accept queue
    drain       read until EOF, then close              (a correct server)
    never-read  accept, never read; tiny receive buffer -> peer's FIN_WAIT1
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time
from typing import cast

MODES = ("leak", "hold", "slow", "drain", "never-read")


def say(**event) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # EMFILE: listing needs an fd too
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="halfopen.lab.apps")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--backlog", type=int, default=128)
    p.add_argument("--nofile", type=int, default=0, help="soft RLIMIT_NOFILE")
    p.add_argument("--rcvbuf", type=int, default=0)
    a = p.parse_args(argv)
    if a.nofile:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (a.nofile, hard))
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if a.rcvbuf:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
    lsock.bind(("0.0.0.0", a.port))
    lsock.listen(a.backlog)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, "listen")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    conns: dict[int, socket.socket] = {}
    accepting = a.mode != "slow"
    next_slow = time.monotonic() + 2.0
    emfile_said = False
    say(event="ready", pid=os.getpid(), port=a.port, mode=a.mode, backlog=a.backlog)
    while True:
        timeout = max(0.0, next_slow - time.monotonic()) if a.mode == "slow" and not accepting else 1.0
        for key, _mask in sel.select(timeout):
            if key.data == "listen":
                try:
                    c, _peer = lsock.accept()
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE):
                        if not emfile_said:
                            say(event="accept_error", errno=errno.errorcode[exc.errno], fds=fd_count())
                            emfile_said = True
                        sel.unregister(lsock)  # stop spinning; a real server would too
                        continue
                    raise
                if a.mode == "slow" and not accepting:
                    sel.unregister(lsock)
                    next_slow = time.monotonic() + 2.0
                c.setblocking(False)
                conns[c.fileno()] = c
                if a.mode != "never-read":
                    sel.register(c, selectors.EVENT_READ, "conn")
                # no event per accept: nobody reads the pipe meanwhile, and a full pipe
                # would block this server (the lab asks with `count` instead)
            elif key.data == "stdin":
                line = sys.stdin.readline()
                if not line or line.strip() == "quit":
                    return 0
                word, _, rest = line.strip().partition(" ")
                if word == "write":
                    sent, errors = 0, []
                    for c in list(conns.values()):
                        try:
                            c.send((rest + "\n").encode())
                            sent += 1
                        except OSError as exc:
                            errors.append(errno.errorcode.get(exc.errno or 0, str(exc.errno)))
                    say(event="wrote", sent=sent, errors=errors)
                elif word == "fast":
                    lsock.listen(1024)
                    accepting = True
                    if not _registered(sel, lsock):
                        sel.register(lsock, selectors.EVENT_READ, "listen")
                    say(event="fast", backlog=1024)
                elif word == "count":
                    say(event="count", open=len(conns), fds=fd_count())
            else:  # a connection is readable
                c = cast(socket.socket, key.fileobj)  # only sockets are registered
                try:
                    data = c.recv(65536)
                except OSError as exc:
                    say(event="conn_error", errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)))
                    sel.unregister(c)
                    if a.mode != "leak":
                        conns.pop(c.fileno(), None)
                        c.close()
                    continue
                if data:
                    if a.mode == "hold" and data.startswith(b"hello"):
                        c.send(b"hi\n")
                    continue
                sel.unregister(c)  # EOF
                if a.mode in ("drain", "hold"):
                    conns.pop(c.fileno(), None)
                    c.close()
        if a.mode == "slow" and not accepting and time.monotonic() >= next_slow \
                and not _registered(sel, lsock):
            sel.register(lsock, selectors.EVENT_READ, "listen")


def _registered(sel: selectors.BaseSelector, obj: socket.socket) -> bool:
    try:
        sel.get_key(obj)
    except KeyError:
        return False
    return True


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
