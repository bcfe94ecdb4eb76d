"""The owner cache between samples (collect.owner_cache) against real processes:
a socket closed, an fd number reused for another socket, a process renamed, a
process that exits and a new one, each shows the right owner in the next
sample, never a stale one."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from halfopen.collect import owners
from halfopen.collect import sockets as collector
from halfopen.collect.owner_cache import OwnerCache
from halfopen.watch.sampler import Sampler, Settings

# A child that makes loopback connections to a listener and closes fds on
# command; one line per answer. Python's socket() takes the lowest free fd,
# so a connection made after a close reuses the closed numbers.
CHILD = r"""
import ctypes, os, socket, sys
ctypes.CDLL(None).prctl(15, b"ho-owner", 0, 0, 0)  # PR_SET_NAME
ls = socket.create_server(("127.0.0.1", 0))
held = {}
print("ready", os.getpid(), ls.fileno(), ls.getsockname()[1], flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "conn":  # -> client fd, its port, server fd
        c = socket.create_connection(ls.getsockname())
        s, _ = ls.accept()
        held[c.fileno()], held[s.fileno()] = c, s
        print(c.fileno(), c.getsockname()[1], s.fileno(), flush=True)
    elif cmd == "close":
        for fd in map(int, args):
            held.pop(fd).close()
        print("ok", flush=True)
    elif cmd == "file":  # a non-socket fd, to be closed and reused
        f = open(os.devnull)
        held[f.fileno()] = f
        print(f.fileno(), flush=True)
    elif cmd == "name":
        ctypes.CDLL(None).prctl(15, args[0].encode(), 0, 0, 0)  # PR_SET_NAME
        print("ok", flush=True)
"""


class Child:
    def __init__(self) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        word, pid, self.listen_fd, port = self.p.stdout.readline().split()
        assert word == "ready"
        self.pid, self.port = int(pid), int(port)

    def ask(self, line: str) -> list[str]:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().split()

    def conn(self) -> tuple[int, int, int]:
        client_fd, client_port, server_fd = map(int, self.ask("conn"))
        return client_fd, client_port, server_fd

    def stop(self) -> None:
        self.p.kill()
        self.p.wait()


@pytest.fixture
def child() -> Iterator[Child]:
    c = Child()
    try:
        yield c
    finally:
        c.stop()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def sample(cache: OwnerCache, port: int) -> dict[tuple[int, int], set[tuple[int, str, int]]]:
    """(local port, peer port) -> {(pid, comm, fd)} of the connections to `port`,
    owners matched by the cache."""
    cache.refresh()
    found = collector.collect(collector.Query(families=(4,))).sockets
    out = {}
    for s in cache.attach(found):
        if port in (s.local_port, s.peer_port) and s.state != 10:  # not the listener
            out[(s.local_port, s.peer_port)] = {(o.pid, o.comm, o.fd) for o in s.owners}
    return out


def truth(port: int) -> dict[tuple[int, int], set[tuple[int, str, int]]]:
    """The same from a full scan: what the cache must agree with."""
    om = owners.scan()
    out = {}
    for s in collector.collect(collector.Query(families=(4,))).sockets:
        if port in (s.local_port, s.peer_port) and s.state != 10:
            out[(s.local_port, s.peer_port)] = {(o.pid, o.comm, o.fd)
                                                for o in om.owners.get(s.inode, ())}
    return out


def test_first_sample_is_a_full_scan_and_the_next_reads_only_new_fds(child):
    cache = OwnerCache(full_every_s=3600, clock=Clock())
    a_client, a_port, a_server = child.conn()
    first = sample(cache, child.port)
    assert cache.full_scans == 1
    comm = "ho-owner"
    assert first[(a_port, child.port)] == {(child.pid, comm, a_client)}
    assert first[(child.port, a_port)] == {(child.pid, comm, a_server)}
    b_client, b_port, b_server = child.conn()
    second = sample(cache, child.port)
    assert cache.full_scans == 0
    assert cache.links_by_pid[child.pid] == 2  # its two new fds, nothing else of it
    assert second[(b_port, child.port)] == {(child.pid, comm, b_client)}
    assert second[(child.port, b_port)] == {(child.pid, comm, b_server)}
    assert second == truth(child.port)


def test_closed_socket_and_reused_fd_numbers_show_the_new_owner(child):
    cache = OwnerCache(full_every_s=3600, clock=Clock())
    a_client, a_port, a_server = child.conn()
    sample(cache, child.port)
    assert child.ask(f"close {a_client} {a_server}") == ["ok"]
    b_client, b_port, b_server = child.conn()
    assert {b_client, b_server} == {a_client, a_server}  # the same fd numbers, new sockets
    got = sample(cache, child.port)
    assert cache.full_scans == 0  # found by reading the suspect process again
    comm = "ho-owner"
    assert got[(b_port, child.port)] == {(child.pid, comm, b_client)}
    assert got[(child.port, b_port)] == {(child.pid, comm, b_server)}
    # the closed connection's ends are orphans now (inode 0): no owner, not the old one
    for key in ((a_port, child.port), (child.port, a_port)):
        assert got.get(key, set()) == set()
    assert got == truth(child.port)


def test_a_file_fd_reused_by_a_socket_waits_for_the_rescan_without_a_stale_owner(child):
    clock = Clock()
    cache = OwnerCache(full_every_s=60, clock=clock)
    (file_fd,) = map(int, child.ask("file"))
    sample(cache, child.port)
    assert child.ask(f"close {file_fd}") == ["ok"]
    client, port, server = child.conn()
    assert file_fd in (client, server)
    clock.t += 1  # the last full scan is recent: no rescan for one unknown socket
    got = sample(cache, child.port)
    assert cache.unowned >= 1 and cache.full_scans == 0
    on_reused = (port, child.port) if client == file_fd else (child.port, port)
    assert got[on_reused] == set()  # unknown for now, never another's
    clock.t += 60
    got = sample(cache, child.port)
    assert got == truth(child.port) and got[on_reused] != set()


def test_renamed_process_and_a_new_process_after_an_exit(child):
    cache = OwnerCache(full_every_s=3600, clock=Clock())
    client, port, server = child.conn()
    sample(cache, child.port)
    assert child.ask("name renamed-ho") == ["ok"]
    got = sample(cache, child.port)
    assert got[(port, child.port)] == {(child.pid, "renamed-ho", client)}
    child.stop()
    other = Child()
    try:
        c2, p2, s2 = other.conn()
        got = sample(cache, other.port)
        assert got[(p2, other.port)] == {(other.pid, "ho-owner", c2)}
        assert got == truth(other.port)
        assert child.pid not in cache.owner_map.processes
        # nothing of the old process is left to be matched
        assert all(child.pid not in {o[0] for o in v} for v in sample(cache, child.port).values())
    finally:
        other.stop()


def test_streamed_samples_count_a_process_from_the_cache(child):
    s = Sampler(Settings(doctor=False, owners_full_every_s=3600))
    for _ in range(3):
        child.conn()
    s.take()
    child.conn()
    second = s.take()
    assert s.owners.full_scans == 0
    proc = second.processes[child.pid]
    assert proc.states.get("established") == 8  # both ends of four connections
    assert proc.fds is not None and proc.fds >= 9


def test_socket_fds_of_other_families_do_not_make_suspects():
    """A unix socket never shows in the TCP dump: its process is not read again."""
    a, b = socket.socketpair()
    try:
        cache = OwnerCache(full_every_s=3600, clock=Clock())
        for _ in range(2):
            sample(cache, 1)
        sample(cache, 1)
        # not read again in full (our process holds dozens of fds): at most a new one or two
        assert cache.full_scans == 0 and cache.links_by_pid.get(os.getpid(), 0) < 5
    finally:
        a.close()
        b.close()


def test_the_table_updated_per_process_holds_what_a_scan_finds_under_churn():
    """Twelve samples while three real processes open and close connections,
    one exits and new ones start (a pid may come back): the cache's table,
    changed per process and never rebuilt, holds for each of them what a full
    scan finds, and the same as a table built at once from the cache's records
    (the order of a shared socket's holders aside)."""
    rng = random.Random(25)
    children = [Child() for _ in range(3)]
    ballast = Child()  # 600 sockets that stay: the changes are a small part of the table
    try:
        for _ in range(300):
            ballast.conn()
        cache = OwnerCache(full_every_s=3600, clock=Clock())
        cache.refresh()
        table = cache.owner_map.owners.table
        open_fds: dict[int, list[int]] = {c.pid: [] for c in children}
        for round_ in range(12):
            for c in children:
                for _ in range(rng.randrange(1, 6)):
                    client, _port, server = c.conn()
                    open_fds[c.pid] += [client, server]
                shut = rng.sample(open_fds[c.pid], k=len(open_fds[c.pid]) // 3)
                if shut:
                    assert c.ask("close " + " ".join(map(str, shut))) == ["ok"]
                    open_fds[c.pid] = [fd for fd in open_fds[c.pid] if fd not in shut]
            if round_ % 4 == 3:  # one exits, a new one takes its place
                gone = children.pop(0)
                gone.stop()
                children.append(Child())
                open_fds[children[-1].pid] = []
            owner_map = cache.refresh()
            assert cache.full_scans == 0
            mine = {c.pid for c in children}
            got = owner_map.owners.table
            assert got is table  # the same table, changed in place
            scanned = owners.scan(pids=sorted(mine)).owners
            assert len(scanned) >= 2 * len(mine)
            for inode in scanned:
                assert sorted(o for o in got.holders(inode) if o >> 32 in mine) == \
                    sorted(o.pid << 32 | o.fd for o in scanned[inode]), (round_, inode)
            held = owners.HolderArrays()
            for pid, c in cache._procs.items():
                held.add(pid, c.sock_fds, c.sock_inodes)
            whole = held.table()
            assert len(got) == len(whole) and sorted(got) == sorted(whole)
            assert all(sorted(got.holders(i)) == sorted(whole.holders(i)) for i in whole)
    finally:
        for c in children + [ballast]:
            c.stop()


def test_the_doctors_sample_fills_the_cache_its_next_sample_reads_new_fds_only(child):
    """The doctor's fd scan is the cache's full one: the streamed sample after it
    reads the links of the fds opened since, not every link again; both samples
    own the child's sockets."""
    for _ in range(3):
        child.conn()
    s = Sampler(Settings(doctor=True, host_every_s=3600, owners_full_every_s=3600))
    first = s.take()
    assert s.owners.full_scans == 1 and s.owners.links_by_pid.get(child.pid, 0) >= 7
    assert first.findings is not None
    assert first.processes[child.pid].states.get("established") == 6
    table = s.owners.owner_map.owners.table
    child.conn()
    second = s.take()
    assert "findings from the doctor's run" in " ".join(second.notes)  # streamed
    assert s.owners.full_scans == 0
    assert s.owners.links_by_pid.get(child.pid) == 2  # the two new fds
    assert s.owners.owner_map.owners.table is table
    assert second.processes[child.pid].states.get("established") == 8
