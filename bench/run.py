"""Benchmark `halfopen sockets` against ss, netstat and psutil on real sockets,
and `halfopen doctor` against its budget (window + 1.5x `halfopen sockets -p -i`).

    python3 bench/run.py [--sockets 100000 200000] [--runs 5]

For each socket count it creates a network namespace of its own, starts
worker processes in it (bench/connections.py, at most 9,000 connections
each: the fd hard limit here is 20,000) that hold loopback connections, half
of them in CLOSE_WAIT/FIN_WAIT2, then times each tool inside that namespace
in the same run, round-robin so background noise spreads evenly, output to
/dev/null. Peak RSS comes from GNU time in a separate run. Prints medians,
peak RSS and the ratios the targets name. The namespace and the workers are
removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PER_WORKER = 9000  # two fds a connection, under the 20,000 fd limit
DOCTOR_WINDOW = 3.0  # halfopen doctor's default --window

TOOLS = {
    "halfopen -p -i --jsonl": ["halfopen", "sockets", "-p", "-i", "--jsonl"],
    "halfopen -p -i (table)": ["halfopen", "sockets", "-p", "-i"],
    "halfopen --jsonl": ["halfopen", "sockets", "--jsonl"],
    "ss -tanpi": ["ss", "-tanpi"],
    "ss -tanp": ["ss", "-tanp"],
    "ss -tan": ["ss", "-tan"],
    "netstat -tanp": ["netstat", "-tanp"],
    "psutil.net_connections": [sys.executable, "-c",
                               "import psutil; psutil.net_connections('tcp')"],
    "halfopen doctor --json": ["halfopen", "doctor", "--window", f"{DOCTOR_WINDOW:g}", "--json"],
}
# exit codes that are a result, not a failure: the doctor's Nagios status 0-3
OK_CODES = {"halfopen doctor --json": (0, 1, 2, 3)}


def in_netns(netns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def count_tcp_sockets(netns: str) -> int:
    out = subprocess.run(in_netns(netns, ["ss", "-tanH"]), capture_output=True, text=True,
                         check=True).stdout
    return out.count("\n")


def create_netns() -> str:
    name = f"halfopen-bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(in_netns(name, ["ip", "link", "set", "lo", "up"]), check=True)
    return name


def start_workers(netns: str, connections: int) -> list[subprocess.Popen]:
    workers = []
    index = 1
    remaining = connections
    try:
        while remaining > 0:
            n = min(PER_WORKER, remaining)
            argv = [sys.executable, os.path.join(HERE, "connections.py"), str(index), str(n)]
            w = subprocess.Popen(in_netns(netns, argv), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
            workers.append(w)
            remaining -= n
            index += 1
        for w in workers:
            if w.stdout.readline().strip() != "ready":
                raise RuntimeError(f"worker {w.pid} failed to open its connections")
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        w.kill()
    for w in workers:
        w.wait(timeout=300)  # a worker closing 18,000 sockets on a loaded host takes a while


def _check(proc: subprocess.CompletedProcess, ok: tuple[int, ...]) -> None:
    if proc.returncode not in ok:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)


def run_once(argv: list[str], ok: tuple[int, ...] = (0,)) -> float:
    """Wall seconds of one run, output discarded."""
    start = time.perf_counter()
    _check(subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), ok)
    return time.perf_counter() - start


def peak_rss_mib(argv: list[str], ok: tuple[int, ...] = (0,)) -> float:
    """Peak RSS of one run, from GNU time (a small parent, so the figure is the tool's)."""
    with tempfile.NamedTemporaryFile("r") as out:
        _check(subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *argv],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), ok)
        return int(out.read().split()[-1]) / 1024


def measure(netns: str, runs: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {name: [] for name in TOOLS}
    for _ in range(runs):
        for name, argv in TOOLS.items():
            times[name].append(run_once(in_netns(netns, argv), OK_CODES.get(name, (0,))))
    return {name: {"median_s": statistics.median(v), "min_s": min(v),
                   "peak_rss_mib": peak_rss_mib(in_netns(netns, TOOLS[name]),
                                                OK_CODES.get(name, (0,)))}
            for name, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, nargs="+", default=[100_000, 200_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = []
    for target in args.sockets:
        netns = create_netns()
        try:
            workers = start_workers(netns, target // 2)
            try:
                total = count_tcp_sockets(netns)
                r = measure(netns, args.runs)
            finally:
                stop_workers(workers)
        finally:
            subprocess.run(["ip", "netns", "del", netns], check=False)
        results.append({"target": target, "sockets": total, "tools": r})
        print(f"\n== {total} TCP sockets ({target // 2} loopback connections, half in "
              f"CLOSE_WAIT/FIN_WAIT2), median of {args.runs} runs")
        for name, v in r.items():
            print(f"{name:28s} {v['median_s']:7.3f} s   peak RSS {v['peak_rss_mib']:7.1f} MiB")
        h = r["halfopen -p -i --jsonl"]["median_s"]
        print(f"ss -tanpi / halfopen -p -i   = {r['ss -tanpi']['median_s'] / h:5.2f}x  (target >= 2)")
        print(f"ss -tanp  / halfopen -p -i   = {r['ss -tanp']['median_s'] / h:5.2f}x  (target >= 1.5)")
        print(f"psutil    / halfopen -p -i   = {r['psutil.net_connections']['median_s'] / h:5.2f}x  (target >= 3)")
        print(f"halfopen -p -i / ss -tan     = {h / r['ss -tan']['median_s']:5.2f}x  (target <= 4)")
        d = r["halfopen doctor --json"]["median_s"]
        budget = DOCTOR_WINDOW + 1.5 * h
        print(f"doctor / (window + 1.5x -p -i) = {d / budget:5.2f}x  (target <= 1: "
              f"{d:.2f} s vs {DOCTOR_WINDOW:g} + 1.5 x {h:.2f} = {budget:.2f} s)")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        growth = (b["tools"]["halfopen -p -i --jsonl"]["median_s"]
                  / a["tools"]["halfopen -p -i --jsonl"]["median_s"])
        print(f"\nscaling {a['sockets']} -> {b['sockets']} sockets: {growth:.2f}x time "
              f"(target <= 2.3x for 2x sockets)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
