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


class Server:
    """One lab server: its listening socket, its connections, its commands on stdin."""

    def __init__(self, lsock: socket.socket, mode: str) -> None:
        self.lsock = lsock
        self.mode = mode
        self.sel = selectors.DefaultSelector()
        self.sel.register(lsock, selectors.EVENT_READ, "listen")
        self.sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
        self.conns: dict[int, socket.socket] = {}
        self.accepting = mode != "slow"  # slow: one accept every 2 s until `fast`
        self.next_slow = time.monotonic() + 2.0
        self.emfile_said = False

    def serve(self) -> int:
        """Until `quit` or the end of stdin; returns the exit code."""
        while True:
            slow = self.mode == "slow" and not self.accepting
            timeout = max(0.0, self.next_slow - time.monotonic()) if slow else 1.0
            for key, _mask in self.sel.select(timeout):
                if key.data == "listen":
                    self.accept()
                elif key.data == "stdin":
                    if not self.command(sys.stdin.readline()):
                        return 0
                else:  # a connection is readable
                    self.read(cast(socket.socket, key.fileobj))  # only sockets are registered
            if self.mode == "slow" and not self.accepting and time.monotonic() >= self.next_slow \
                    and not _registered(self.sel, self.lsock):
                self.sel.register(self.lsock, selectors.EVENT_READ, "listen")

    def accept(self) -> None:
        try:
            c, _peer = self.lsock.accept()
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            if not self.emfile_said:
                say(event="accept_error", errno=errno.errorcode[exc.errno], fds=fd_count())
                self.emfile_said = True
            self.sel.unregister(self.lsock)  # stop spinning; a real server would too
            return
        if self.mode == "slow" and not self.accepting:
            self.sel.unregister(self.lsock)
            self.next_slow = time.monotonic() + 2.0
        c.setblocking(False)
        self.conns[c.fileno()] = c
        if self.mode != "never-read":
            self.sel.register(c, selectors.EVENT_READ, "conn")
        # no event per accept: nobody reads the pipe meanwhile, and a full pipe
        # would block this server (the lab asks with `count` instead)

    def command(self, line: str) -> bool:
        """Obey one line of stdin; False on `quit` or the end of stdin."""
        if not line or line.strip() == "quit":
            return False
        word, _, rest = line.strip().partition(" ")
        if word == "write":
            sent, errors = 0, []
            for c in list(self.conns.values()):
                try:
                    c.send((rest + "\n").encode())
                    sent += 1
                except OSError as exc:
                    errors.append(errno.errorcode.get(exc.errno or 0, str(exc.errno)))
            say(event="wrote", sent=sent, errors=errors)
        elif word == "fast":
            self.lsock.listen(1024)
            self.accepting = True
            if not _registered(self.sel, self.lsock):
                self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
            say(event="fast", backlog=1024)
        elif word == "count":
            say(event="count", open=len(self.conns), fds=fd_count())
        return True

    def read(self, c: socket.socket) -> None:
        try:
            data = c.recv(65536)
        except OSError as exc:
            say(event="conn_error", errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)))
            self.sel.unregister(c)
            if self.mode != "leak":
                self.conns.pop(c.fileno(), None)
                c.close()
            return
        if data:
            if self.mode == "hold" and data.startswith(b"hello"):
                c.send(b"hi\n")
            return
        self.sel.unregister(c)  # EOF
        if self.mode in ("drain", "hold"):
            self.conns.pop(c.fileno(), None)
            c.close()


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
    server = Server(lsock, a.mode)
    say(event="ready", pid=os.getpid(), port=a.port, mode=a.mode, backlog=a.backlog)
    return server.serve()


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
