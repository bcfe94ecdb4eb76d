"""The streamed sample counted from the raw dump (collect.state_tally) against
the one folded from every decoded Socket record (Settings(tally=False)): the
same Sample and the same /metrics, on real loopback sockets in a namespace of
the test's own, spread over processes, including sockets the owner cache
cannot know from an fd listing."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from halfopen.collect import netns as netns_mod
from halfopen.watch.sample import Sample
from halfopen.watch.sampler import Sampler, Settings
from halfopen.watch.serving.exporter import families

HOLDER = Path(__file__).parent / "mixed_holder.py"
# the families a streamed sample builds from the dump (host counters and
# timings are read fresh and host-wide: they differ between two samples)
COMPARED = ("halfopen_sockets", "halfopen_process_sockets", "halfopen_process_open_fds",
            "halfopen_process_fd_limit", "halfopen_process_info", "halfopen_processes_capped",
            "halfopen_listener_")


@contextmanager
def holders(netns: str, counts: list[int]) -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    try:
        for i, n in enumerate(counts):
            # the first forks a child holding every fd too: sockets with two holders
            argv = ["ip", "netns", "exec", netns, sys.executable, str(HOLDER), str(n),
                    *(["--fork"] if i == 0 else [])]
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(p)
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        yield procs
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


class _Fixed:
    def __init__(self, sample: Sample) -> None:
        self.sample = sample

    def collect(self):
        return list(families(self.sample, 20))


def metrics(sample: Sample) -> tuple[list[str], dict[str, float]]:
    """The compared series, and the oldest-CLOSE_WAIT ages by series."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Fixed(sample))  # type: ignore[arg-type]
    lines, ages = [], {}
    for line in generate_latest(reg).decode().splitlines():
        if line.startswith("halfopen_process_oldest_close_wait_seconds{"):
            key, value = line.rsplit(" ", 1)
            ages[key] = float(value)
        elif line.startswith(COMPARED):
            lines.append(line)
    return lines, ages


def same(fast: Sample, full: Sample, apart_s: float) -> None:
    assert fast.states == full.states
    assert {p: (v.comm, v.states, v.fds, v.fd_limit) for p, v in fast.processes.items()} == \
        {p: (v.comm, v.states, v.fds, v.fd_limit) for p, v in full.processes.items()}
    assert fast.listeners == full.listeners
    fast_cw, full_cw = dict(fast.close_wait.items()), dict(full.close_wait.items())
    assert {c: pid for c, (pid, _a) in fast_cw.items()} == {c: pid for c, (pid, _a) in full_cw.items()}
    # ages are tcp_info's last_ack_recv (ms), read once per sample: apart by the time between
    slack = apart_s + 0.002
    for cookie, (_pid, age) in fast_cw.items():
        other = full_cw[cookie][1]
        assert age is not None and other is not None and abs(age - other) <= slack
    fast_lines, fast_ages = metrics(fast)
    full_lines, full_ages = metrics(full)
    assert fast_lines == full_lines
    assert fast_ages.keys() == full_ages.keys()
    for key, age in fast_ages.items():
        assert math.isclose(age, full_ages[key], abs_tol=slack), key


def pair(fast: Sampler, full: Sampler) -> tuple[Sample, Sample, float]:
    t0 = time.monotonic()
    a = fast.take()
    b = full.take()
    return a, b, time.monotonic() - t0


def wait_settled(sampler: Sampler, pid: int, want: dict[str, int]) -> Sample:
    """FIN_WAIT1 and LAST_ACK pass in microseconds on loopback; wait them out."""
    deadline = time.monotonic() + 20
    while True:
        s = sampler.take()
        got = s.processes[pid].states if pid in s.processes else {}
        if got == want or time.monotonic() > deadline:
            assert got == want
            return s
        time.sleep(0.2)


def test_tally_gives_the_metrics_of_every_socket_decoded(netns):
    space = netns_mod.named(netns)
    settings = dict(namespaces=(space,), doctor=False)
    fast = Sampler(Settings(**settings))  # type: ignore[arg-type]
    full = Sampler(Settings(**settings, tally=False))  # type: ignore[arg-type]
    with holders(netns, [1500, 1000, 1000]) as procs:
        # per 1000: 600 established, 200 fin_wait2, 400 close_wait held, 3 listeners
        want = {"established": 600, "fin_wait2": 200, "close_wait": 400, "listen": 3}
        wait_settled(fast, procs[2].pid, want)
        a, b, apart = pair(fast, full)
        assert sum(a.state_totals().values()) > 5000
        assert a.processes[procs[0].pid].states["close_wait"] == 600
        assert len(a.close_wait) == 1400
        same(a, b, apart)

        # 50 held pairs of the last holder replaced on the same fd numbers: its fd
        # listing does not change, so the cache must find the new inodes (recover)
        swap = procs[2]
        assert swap.stdin is not None and swap.stdout is not None
        swap.stdin.write("swap 50\n")
        swap.stdin.flush()
        assert swap.stdout.readline() == "done\n"
        # 25 established pairs and 25 half-closed ones went; 50 new pairs came; the
        # old CLOSE_WAIT sockets of 5 also dup()ed fds stay held
        after = {"established": 650, "fin_wait2": 175, "close_wait": 380, "listen": 3}
        wait_settled(fast, swap.pid, after)
        a, b, apart = pair(fast, full)
        assert a.processes[swap.pid].states == after
        assert fast.owners.unowned == 0
        same(a, b, apart)
