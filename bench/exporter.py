"""Benchmark the exporter and the watch against issue 5's targets, on real sockets.

    python3 bench/exporter.py [--big 100000] [--small 10000] [--runs 7]
                              [--scrapes 1000] [--watch-seconds 60] [--json FILE]

Targets (issue 5, "Speed and memory"):

1. a scrape at 100k sockets takes under 1.5x the time of
   `halfopen sockets -p -i --jsonl`;
2. the exporter's RSS stays flat (within 10 %) over 1,000 scrapes at 10k sockets;
3. `halfopen watch --interval 1` on 10k sockets uses under 25 % of one core.

Each socket count gets a network namespace of its own with workers holding
loopback connections (half CLOSE_WAIT/FIN_WAIT2), built with bench/run.py's
helpers. Everything runs inside that namespace through `ip netns exec`:
`halfopen exporter --listen 127.0.0.1:PORT` (with the doctor, the default,
and with --no-doctor), a small scraper (urllib GET /metrics, timed in the
scraper so its own start-up is not counted) and `halfopen sockets -p -i
--jsonl`, round-robin in the same run so background noise spreads evenly.
RSS is VmRSS from /proc/PID/status; CPU is utime+stime from /proc/PID/stat
over wall time, taken after the watch's first frame (start-up excluded).
The watch writes to a file with TERM=dumb, so rich never waits on a terminal.
Exporters, watches, workers and the namespaces are removed at the end, also
on failure or Ctrl-C.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import TOOLS, count_tcp_sockets, create_netns, in_netns, run_once, start_workers, stop_workers  # noqa: E402

SOCKETS_CMD = TOOLS["halfopen -p -i --jsonl"]
PORT = 9469

# Runs inside the namespace: for each stdin line "N", N timed GETs; prints the
# times (s) as one JSON line. An empty line or EOF ends it.
SCRAPER = r"""
import json, sys, time, urllib.request
url = sys.argv[1]
for line in sys.stdin:
    n = int(line or 0)
    if n <= 0:
        break
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as r:
            body = r.read()
        times.append(time.perf_counter() - t)
    print(json.dumps({"times": times, "bytes": len(body)}), flush=True)
"""


class Scraper:
    def __init__(self, netns: str, port: int) -> None:
        self.p = subprocess.Popen(
            in_netns(netns, [sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{port}/metrics"]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def scrape(self, n: int) -> list[float]:
        self.p.stdin.write(f"{n}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("scraper died")
        return json.loads(line)["times"]

    def close(self) -> None:
        stop(self.p)


def stop(p: subprocess.Popen | None) -> None:
    """TERM, then KILL; `ip netns exec` execs its command, so p.pid is the tool itself."""
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=10)


def start_exporter(netns: str, port: int, doctor: bool, log) -> subprocess.Popen:
    argv = ["halfopen", "exporter", "--listen", f"127.0.0.1:{port}"]
    if not doctor:
        argv.append("--no-doctor")
    p = subprocess.Popen(in_netns(netns, argv), stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until it listens
        if p.poll() is not None:
            raise RuntimeError(f"exporter exited with {p.returncode}")
        ok = subprocess.run(in_netns(netns, ["ss", "-tlnH", f"sport = :{port}"]),
                            capture_output=True, text=True).stdout.strip()
        if ok:
            return p
        time.sleep(0.2)
    stop(p)
    raise RuntimeError("exporter did not start listening")


def vm_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_fds() -> int:
    with open("/proc/sys/fs/file-nr") as f:
        return int(f.read().split()[0])


class Bench:
    """One namespace with `connections` loopback connections, and what runs in it."""

    def __init__(self, connections: int) -> None:
        self.connections = connections
        self.netns = None
        self.workers: list[subprocess.Popen] = []
        self.procs: list = []  # exporters, scrapers, watches: stopped on exit

    def __enter__(self) -> Bench:
        self.netns = create_netns()
        try:
            self.workers = start_workers(self.netns, self.connections)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        for p in reversed(self.procs):
            try:
                stop(p.p if isinstance(p, Scraper) else p)
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                print(f"cleanup: {exc}", file=sys.stderr)
        try:
            stop_workers(self.workers)
        finally:
            subprocess.run(["ip", "netns", "del", self.netns], check=False)

    def sockets(self) -> int:
        dead = [w.pid for w in self.workers if w.poll() is not None]
        if dead:  # e.g. someone else's cleanup killed them: the figures would be void
            raise RuntimeError(f"bench workers {dead} died: their sockets are gone")
        return count_tcp_sockets(self.netns)


def scrape_vs_sockets(b: Bench, runs: int, log) -> dict:
    """Target 1: exporter scrape (with and without the doctor) vs `sockets -p -i`."""
    out: dict = {"sockets_before": b.sockets()}
    scrapers = {}
    for i, (name, doctor) in enumerate((("doctor", True), ("no_doctor", False))):
        exp = start_exporter(b.netns, PORT + i, doctor, log)
        b.procs.append(exp)
        sc = Scraper(b.netns, PORT + i)
        b.procs.append(sc)
        out[f"first_scrape_{name}_s"] = sc.scrape(1)[0]  # warm-up: imports, first walk
        scrapers[name] = sc
    times: dict[str, list[float]] = {"doctor": [], "no_doctor": [], "sockets": []}
    for _ in range(runs):
        for name, sc in scrapers.items():
            times[name] += sc.scrape(1)
        times["sockets"].append(run_once(in_netns(b.netns, SOCKETS_CMD)))
    out["sockets_after"] = b.sockets()
    for name, v in times.items():
        out[f"{name}_median_s"] = statistics.median(v)
        out[f"{name}_min_s"] = min(v)
    for name in ("doctor", "no_doctor"):
        out[f"ratio_{name}"] = out[f"{name}_median_s"] / out["sockets_median_s"]
    return out


def rss_over_scrapes(b: Bench, scrapes: int, log, doctor: bool = True) -> dict:
    """Target 2: VmRSS after scrape 10 and after the last one (and every 10 % between)."""
    exp = start_exporter(b.netns, PORT + 10, doctor, log)
    b.procs.append(exp)
    sc = Scraper(b.netns, PORT + 10)
    b.procs.append(sc)
    out: dict = {"sockets_before": b.sockets(), "doctor": doctor}
    t0 = time.monotonic()
    times = sc.scrape(10)
    curve = [(10, vm_rss_mib(exp.pid))]
    step = max(1, (scrapes - 10) // 10)
    done = 10
    while done < scrapes:
        n = min(step, scrapes - done)
        times += sc.scrape(n)
        done += n
        curve.append((done, vm_rss_mib(exp.pid)))
    out["wall_s"] = time.monotonic() - t0
    out["sockets_after"] = b.sockets()
    out["scrape_median_s"] = statistics.median(times)
    out["rss_curve_mib"] = curve
    out["rss_10_mib"], out["rss_last_mib"] = curve[0][1], curve[-1][1]
    out["rss_growth_pct"] = 100 * (curve[-1][1] - curve[0][1]) / curve[0][1]
    sc.close()
    stop(exp)
    return out


def watch_cpu(b: Bench, seconds: float, doctor: bool) -> dict:
    """Target 3: `halfopen watch --interval 1` CPU over wall time, after its first frame."""
    argv = ["halfopen", "watch", "--interval", "1"] + ([] if doctor else ["--no-doctor"])
    env = dict(os.environ, TERM="dumb", COLUMNS="160", LINES="60")
    with tempfile.TemporaryFile("w+") as screen:
        p = subprocess.Popen(in_netns(b.netns, argv), stdout=screen, stderr=subprocess.STDOUT,
                             env=env)
        b.procs.append(p)
        deadline = time.monotonic() + 60
        while os.fstat(screen.fileno()).st_size == 0:  # first frame: start-up done
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"watch produced no frame (exit {p.returncode})")
            time.sleep(0.05)
        start_cpu, start_wall = cpu_seconds(p.pid), time.monotonic()
        time.sleep(seconds)
        cpu, wall = cpu_seconds(p.pid) - start_cpu, time.monotonic() - start_wall
        rss = vm_rss_mib(p.pid)
        stop(p)
        screen.seek(0)
        frames = sum(1 for line in screen if line.startswith("\u2500\u2500\u2500"))
    return {"doctor": doctor, "cpu_s": cpu, "wall_s": wall, "core_pct": 100 * cpu / wall,
            "frames": frames, "rss_mib": rss}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", type=int, default=100_000, help="sockets for the scrape-time target")
    ap.add_argument("--small", type=int, default=10_000, help="sockets for the RSS and watch targets")
    ap.add_argument("--runs", type=int, default=7, help="timed scrapes and `sockets -p -i` runs")
    ap.add_argument("--scrapes", type=int, default=1000)
    ap.add_argument("--watch-seconds", type=float, default=60)
    ap.add_argument("--only", choices=("scrape", "rss", "watch"), nargs="+",
                    default=["scrape", "rss", "watch"])
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    res: dict = {"load_before": os.getloadavg(), "host_fds": host_fds()}
    print(f"host-wide open files (fs.file-nr) {res['host_fds']}: the owner scan reads every "
          "process's fds, also those outside the bench namespace")
    with tempfile.TemporaryFile("w+") as log:
        try:
            if "scrape" in a.only:
                with Bench(a.big // 2) as b:
                    r = res["scrape"] = scrape_vs_sockets(b, a.runs, log)
                print(f"\n== target 1: scrape at {r['sockets_before']} TCP sockets "
                      f"(median of {a.runs}, round-robin)")
                print(f"sockets -p -i --jsonl        {r['sockets_median_s']:7.3f} s "
                      f"(min {r['sockets_min_s']:.3f})")
                for name in ("doctor", "no_doctor"):
                    print(f"scrape, {name:10s}           {r[name + '_median_s']:7.3f} s "
                          f"(min {r[name + '_min_s']:.3f}, first {r['first_scrape_' + name + '_s']:.3f})"
                          f"  ratio {r['ratio_' + name]:.2f}x (target < 1.5)")
            if "rss" in a.only or "watch" in a.only:
                with Bench(a.small // 2) as b:
                    if "rss" in a.only:
                        r = res["rss"] = rss_over_scrapes(b, a.scrapes, log)
                        print(f"\n== target 2: exporter RSS over {a.scrapes} scrapes at "
                              f"{r['sockets_before']} TCP sockets ({r['sockets_after']} after; "
                              f"doctor on; {r['wall_s']:.0f} s, median scrape "
                              f"{r['scrape_median_s'] * 1000:.0f} ms)")
                        print("RSS MiB by scrape: " + ", ".join(f"{n}: {m:.1f}"
                                                                 for n, m in r["rss_curve_mib"]))
                        print(f"after scrape 10 {r['rss_10_mib']:.1f} MiB, after {a.scrapes} "
                              f"{r['rss_last_mib']:.1f} MiB: {r['rss_growth_pct']:+.1f} % "
                              f"(target within 10 %)")
                    if "watch" in a.only:
                        res["watch"] = []
                        print(f"\n== target 3: watch --interval 1 at {b.sockets()} TCP sockets, "
                              f"{a.watch_seconds:.0f} s after the first frame")
                        for doctor in (True, False):
                            r = watch_cpu(b, a.watch_seconds, doctor)
                            res["watch"].append(r)
                            print(f"{'doctor on ' if doctor else '--no-doctor'}  "
                                  f"{r['cpu_s']:.1f} CPU s / {r['wall_s']:.1f} s = "
                                  f"{r['core_pct']:.1f} % of one core, {r['frames']} frames, "
                                  f"RSS {r['rss_mib']:.0f} MiB (target < 25 %)")
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:])
            raise
    res["load_after"] = os.getloadavg()
    print(f"\nload average before {res['load_before'][0]:.2f}, after {res['load_after'][0]:.2f} "
          f"({os.cpu_count()} CPUs, shared)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
