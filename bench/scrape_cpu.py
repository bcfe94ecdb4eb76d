"""CPU time of one streamed sample (the exporter's scrape between doctor runs),
counted from the raw dump (collect.state_tally) and folded from decoded Socket
records (Settings(tally=False)), in one process (issue 25).

    PYTHONPATH=src python3 bench/scrape_cpu.py [--sockets 100000] [--runs 5] [--profile]

Wall time on a shared machine swings by 2x with the load; the CPU time of the
sampling thread (time.thread_time) is what the change moves. It builds a
namespace with bench/run.py's workers (as bench/scale.py), takes one warm-up
sample with each sampler (the owner cache's first, full scan), then --runs
samples each, alternating, and prints the medians; with --profile, the top of
a cProfile of one tallied sample. Workers and namespace are removed at the
end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import count_tcp_sockets, create_netns, in_netns, start_workers, stop_workers  # noqa: E402

from halfopen.collect import netns as netns_mod  # noqa: E402
from halfopen.watch.sampler import Sampler, Settings  # noqa: E402


def timed(sampler: Sampler) -> tuple[float, float]:
    w, c = time.perf_counter(), time.thread_time()
    sampler.take()
    return time.thread_time() - c, time.perf_counter() - w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sockets", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    netns = create_netns()
    try:
        subprocess.run(in_netns(netns, ["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"]),
                       check=True)
        workers = start_workers(netns, a.sockets // 2)
        try:
            print(f"{count_tcp_sockets(netns)} TCP sockets; load {os.getloadavg()[0]:.2f}")
            space = (netns_mod.named(netns),)
            tally = Sampler(Settings(namespaces=space, doctor=False))
            full = Sampler(Settings(namespaces=space, doctor=False, tally=False))
            timed(tally), timed(full)  # the owner caches' first, full scans
            got: dict[str, list[tuple[float, float]]] = {"tally": [], "decoded": []}
            for _ in range(a.runs):
                got["tally"].append(timed(tally))
                got["decoded"].append(timed(full))
            for name, v in got.items():
                print(f"{name:8} cpu {statistics.median(c for c, _w in v):.3f} s  "
                      f"wall {statistics.median(w for _c, w in v):.3f} s")
            if a.profile:
                prof = cProfile.Profile()
                prof.runcall(tally.take)
                pstats.Stats(prof).sort_stats("tottime").print_stats(12)
            print(f"load {os.getloadavg()[0]:.2f}")
        finally:
            stop_workers(workers)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
