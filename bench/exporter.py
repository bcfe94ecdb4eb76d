"""Exporter scrape time at N sockets, against `halfopen sockets -p -i`, and RSS over scrapes.

    python3 bench/exporter.py [--sockets N] [--scrapes K]

Opens N/2 loopback connections in this process (N sockets: half CLOSE_WAIT,
half FIN_WAIT2 until tcp_fin_timeout), then times K in-process scrapes of the
collector (prometheus_client text exposition included) and K collections
of the same data the way `halfopen sockets -p -i` reads it. Reports the
median times, their ratio, and the RSS after the first, second and last scrape.
Short by default: it shares the machine.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import time

import psutil
from prometheus_client import CollectorRegistry, generate_latest

from halfopen.collect import sockets as collector
from halfopen.watch.exporter import HalfopenCollector
from halfopen.watch.sampler import Sampler, Settings


def leak(n: int) -> list[socket.socket]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    port = srv.getsockname()[1]
    kept = [srv]
    for _ in range(n // 2):
        c = socket.create_connection(("127.0.0.1", port))
        s, _ = srv.accept()
        c.close()
        kept.append(s)
    return kept


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", type=int, default=2000)
    ap.add_argument("--scrapes", type=int, default=30)
    a = ap.parse_args()
    kept = leak(a.sockets)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(HalfopenCollector(Sampler(Settings(doctor=False)), top=20))
    proc = psutil.Process()

    scrape_times, rss = [], []
    for _ in range(a.scrapes):
        t = time.perf_counter()
        generate_latest(reg)
        scrape_times.append(time.perf_counter() - t)
        rss.append(proc.memory_info().rss)

    list_times = []
    q = collector.Query(tcp_info=True, owners=True)
    for _ in range(a.scrapes):
        t = time.perf_counter()
        for _s in collector.collect(q).sockets:
            pass
        list_times.append(time.perf_counter() - t)

    ms, ml = statistics.median(scrape_times), statistics.median(list_times)
    print(f"sockets in table      ~{a.sockets} (held open by this process: {len(kept) - 1} CLOSE_WAIT)")
    print(f"scrape (median of {a.scrapes})  {ms * 1000:.1f} ms")
    print(f"sockets -p -i read    {ml * 1000:.1f} ms   ratio {ms / ml:.2f}x")
    base = rss[1] if len(rss) > 1 else rss[0]  # after warm-up: the first scrape sets the working set
    print(f"RSS after 1st / 2nd / last scrape {rss[0] / 2**20:.1f} / {base / 2**20:.1f} / "
          f"{rss[-1] / 2**20:.1f} MiB (last vs 2nd {100 * (rss[-1] - base) / base:+.1f} %)")


if __name__ == "__main__":
    main()
