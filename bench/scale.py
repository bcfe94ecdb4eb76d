"""Benchmark halfopen at 100k, 400k and 1M sockets against a plain C program (issue 11).

    python3 bench/scale.py [--sockets 100000 400000 1000000] [--runs 3]
                           [--limit 600] [--ss-limit 60] [--only ROW ...] [--json FILE]

For each socket count it creates a network namespace of its own and starts
worker processes in it (bench/connections.py via bench/run.py's helpers, at
most 9,000 connections each under the 20,000 fd hard limit: 56 workers for
1M sockets) holding real loopback connections, half of them half-closed
(FIN_WAIT2 on the client end, CLOSE_WAIT on the server end, fds held). Each
worker has its own 127.<i>.0.1 -> 127.<i>.0.2 address pair, so the
ephemeral ports (net.ipv4.ip_local_port_range, widened inside the
namespace) are counted per worker.

Rows, timed round-robin inside the namespace, output to /dev/null, median
of --runs; peak RSS of every row from wait4()'s rusage (ru_maxrss) of the
tool, taken by a small launcher (bench/maxrss.c: a child of the Python
benchmark would start with the benchmark's own RSS as its high-water mark);
`ip netns exec` execs the tool, so the launcher's child is the tool:

  C reference           bench/cref.c, built here with cc -O2: one /proc/*/fd
                        readlink pass, one sock_diag dump with INET_DIAG_INFO
                        and SKMEMINFO, one JSON line per socket
  ss -tan, ss -tanp     where they finish within --ss-limit seconds (a row that
                        times out once is not run again at that or larger sizes)
  sockets -p -i --jsonl, sockets -p -i (the aligned table), doctor --json
  --window 0, watch --once (its first sample runs the doctor), watch --once
  --no-doctor (a streamed sample)
  exporter scrape       an exporter started for the round; a scraper in the
                        namespace times the first GET (doctor and host pass)
                        and a second one (streamed); peak RSS is the
                        exporter's over both; also with --no-doctor

The namespace, workers, exporters and the built program are removed at the
end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import count_tcp_sockets, create_netns, in_netns, start_workers, stop_workers  # noqa: E402

PORT = 9469
DOCTOR_CODES = (0, 1, 2, 3)  # Nagios status: a result, not a failure

SCRAPER = r"""
import json, sys, time, urllib.request
url = sys.argv[1]
for line in sys.stdin:
    if not line.strip():
        break
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        body = r.read()
    print(json.dumps({"s": time.perf_counter() - t, "bytes": len(body)}), flush=True)
"""


def build(workdir: str, name: str) -> str:
    exe = os.path.join(workdir, name)
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, name + ".c")], check=True)
    return exe


MAXRSS = ""  # bench/maxrss.c, built in main()


def usage(stderr: str) -> tuple[float, float]:
    """(peak RSS MiB, CPU s) from the launcher's last line."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("maxrss_kib "):
            f = line.split()
            return int(f[1]) / 1024, float(f[3])
    raise RuntimeError(f"no peak RSS reported: {stderr[-300:]!r}")


class Timeout(Exception):
    pass


def run_child(argv: list[str], limit: float, ok=(0,), env=None) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MiB, CPU s) of one run, output discarded; Timeout past `limit`."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        # its own process group, so a timeout stops the launcher and the tool
        p = subprocess.Popen([MAXRSS, *argv], stdout=subprocess.DEVNULL, stderr=err, env=env,
                             start_new_session=True)
        timer = threading.Timer(limit, os.killpg, (p.pid, 9))
        timer.start()
        try:
            p.wait()
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        if p.returncode == -9 and wall >= limit:
            raise Timeout(f"{argv[-1]} over {limit:g} s")
        if p.returncode not in ok:
            raise subprocess.CalledProcessError(p.returncode, argv)
        err.seek(0)
        return (wall, *usage(err.read()))


def exporter_scrape(netns: str, limit: float, extra: tuple[str, ...] = ()) -> dict:
    """Start an exporter, time two scrapes from a scraper, stop it; its peak RSS."""
    with tempfile.TemporaryFile("w+") as err:
        exp = subprocess.Popen([MAXRSS, *in_netns(netns, ["halfopen", "exporter", "--listen",
                                                          f"127.0.0.1:{PORT}", *extra])],
                               stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        scraper = None
        try:
            deadline = time.monotonic() + 60
            while not subprocess.run(in_netns(netns, ["ss", "-tlnH", f"sport = :{PORT}"]),
                                     capture_output=True, text=True).stdout.strip():
                if exp.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"exporter did not start (exit {exp.poll()})")
                time.sleep(0.2)
            scraper = subprocess.Popen(
                in_netns(netns, [sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{PORT}/metrics"]),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            times = []
            for _ in range(2):
                scraper.stdin.write("go\n")
                scraper.stdin.flush()
                line = scraper.stdout.readline()
                if not line:
                    raise RuntimeError("scraper died")
                times.append(json.loads(line)["s"])
                if times[-1] > limit:
                    break
        finally:
            if scraper is not None:
                scraper.stdin.close()
                scraper.wait(timeout=30)
            exp.terminate()  # the launcher passes SIGTERM on, then reports
            try:
                exp.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(exp.pid, 9)
                exp.wait()
            err.seek(0)
            text = err.read()
    rss, cpu = usage(text)
    return {"first_s": times[0], "second_s": times[-1], "rss_mib": rss, "cpu_s": cpu}


def rows(cref: str, ss_limit: float) -> dict[str, dict]:
    watch_env = dict(os.environ, TERM="dumb", COLUMNS="160", LINES="60")
    return {
        "C reference": {"argv": [cref]},
        "ss -tan": {"argv": ["ss", "-tan"], "limit": ss_limit},
        "ss -tanp": {"argv": ["ss", "-tanp"], "limit": ss_limit},
        "sockets -p -i --jsonl": {"argv": ["halfopen", "sockets", "-p", "-i", "--jsonl"]},
        "sockets -p -i (table)": {"argv": ["halfopen", "sockets", "-p", "-i"]},
        "doctor --json --window 0": {"argv": ["halfopen", "doctor", "--json", "--window", "0"],
                                     "ok": DOCTOR_CODES},
        "watch --once": {"argv": ["halfopen", "watch", "--once"], "env": watch_env},
        "watch --once --no-doctor": {"argv": ["halfopen", "watch", "--once", "--no-doctor"],
                                     "env": watch_env},
        # the first scrape runs the doctor and the host pass, the second is streamed
        "exporter scrape": {"exporter": ()},
        "exporter --no-doctor scrape": {"exporter": ("--no-doctor",)},
    }


def load_report() -> str:
    """Load average and the busiest other processes: what else ran."""
    top = subprocess.run(["ps", "-eo", "pcpu,rss,comm", "--sort=-pcpu"], capture_output=True,
                         text=True).stdout.splitlines()[1:6]
    load = os.getloadavg()
    return f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; top: " + "; ".join(
        " ".join(t.split()) for t in top)


def measure(netns: str, table: dict[str, dict], runs: int, limit: float,
            skip: set[str], after_round=lambda got: None) -> dict[str, dict]:
    got: dict[str, dict] = {name: {"s": [], "rss": [], "cpu": []} for name in table}
    for r in range(runs):
        for name, row in table.items():
            if name in skip:
                continue
            try:
                if "exporter" in row:
                    e = exporter_scrape(netns, limit, row["exporter"])
                    got[name]["s"].append(e["second_s"])
                    got[name].setdefault("first_s", []).append(e["first_s"])
                    got[name]["rss"].append(e["rss_mib"])
                    got[name]["cpu"].append(e["cpu_s"])  # exporter start + both scrapes
                else:
                    s, rss, cpu = run_child(in_netns(netns, row["argv"]),
                                            min(limit, row.get("limit", limit)),
                                            row.get("ok", (0,)), row.get("env"))
                    got[name]["s"].append(s)
                    got[name]["rss"].append(rss)
                    got[name]["cpu"].append(cpu)
            except Timeout:
                got[name]["timeout"] = min(limit, row.get("limit", limit))
                skip.add(name)
            except (subprocess.CalledProcessError, RuntimeError) as exc:
                got[name]["error"] = str(exc)  # e.g. killed for memory: say so, go on
                skip.add(name)
            after_round(summarize(got))
            print(f"  run {r + 1} {name}: " + (f"{got[name]['s'][-1]:.2f} s"
                                             if name not in skip else "stopped"),
                  file=sys.stderr, flush=True)
    return summarize(got)


def summarize(got: dict[str, dict]) -> dict[str, dict]:
    """Medians of the runs so far (a partial result is saved after each round)."""
    out = {}
    for name, v in got.items():
        if v["s"]:
            out[name] = {"median_s": statistics.median(v["s"]), "min_s": min(v["s"]),
                         "runs": len(v["s"]), "peak_rss_mib": statistics.median(v["rss"]),
                         "cpu_s": statistics.median(v["cpu"])}
            if "first_s" in v:
                out[name]["first_median_s"] = statistics.median(v["first_s"])
        elif "timeout" in v:
            out[name] = {"timeout_s": v["timeout"]}
        elif "error" in v:
            out[name] = {"error": v["error"]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sockets", type=int, nargs="+", default=[100_000, 400_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=float, default=600.0, help="seconds before a row is dropped")
    ap.add_argument("--ss-limit", type=float, default=60.0, help="the same for ss")
    ap.add_argument("--only", nargs="+", help="row names to run (default: all)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--markdown", nargs="+", metavar="FILE.json",
                    help="print one Markdown table from saved --json files, run nothing")
    a = ap.parse_args()
    if a.markdown:
        markdown(a.markdown)
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = tempfile.mkdtemp(prefix="halfopen-bench-")
    results = []
    skip: set[str] = set()
    try:
        global MAXRSS
        MAXRSS = build(workdir, "maxrss")
        table = rows(build(workdir, "cref"), a.ss_limit)
        if a.only:
            table = {k: v for k, v in table.items() if k in a.only}
        for target in a.sockets:
            netns = create_netns()
            try:
                # per-netns since 4.x (inet_init_net): room for 9,000 ports a worker
                subprocess.run(in_netns(netns, ["sysctl", "-qw",
                                                "net.ipv4.ip_local_port_range=10000 65000"]),
                               check=True)
                t0 = time.monotonic()
                workers = start_workers(netns, target // 2)
                try:
                    total = count_tcp_sockets(netns)
                    print(f"== {total} TCP sockets, {len(workers)} workers, set up in "
                          f"{time.monotonic() - t0:.0f} s; {load_report()}", flush=True)
                    before = load_report()

                    def save(partial, total=total, before=before, target=target):
                        if a.json:
                            with open(a.json, "w") as f:
                                json.dump(results + [{"target": target, "sockets": total,
                                                      "partial": True, "before": before,
                                                      "rows": partial}], f, indent=2)

                    got = measure(netns, table, a.runs, a.limit, skip, save)
                    after = load_report()
                finally:
                    stop_workers(workers)
            finally:
                subprocess.run(["ip", "netns", "del", netns], check=False)
            results.append({"target": target, "sockets": total, "workers": len(workers),
                            "before": before, "after": after, "rows": got,
                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
            print_table(results[-1])
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(results, f, indent=2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def markdown(paths: list[str]) -> None:
    """One Markdown table from saved --json files: a column per socket count."""
    results = []
    for path in paths:
        with open(path) as f:
            results += json.load(f)
    names: list[str] = []
    for r in results:
        names += [n for n in r["rows"] if n not in names]
    head = "| | " + " | ".join(f"{r['sockets']:,} sockets" + (" (partial)" if r.get("partial")
                                                               else "") for r in results) + " |"
    print(head)
    print("|---" * (len(results) + 1) + "|")
    for name in names:
        cells = []
        for r in results:
            v = r["rows"].get(name)
            ref = r["rows"].get("C reference", {})
            if v is None:
                cells.append("not run")
            elif "timeout_s" in v:
                cells.append(f"> {v['timeout_s']:.0f} s")
            elif "error" in v:
                cells.append("failed")
            else:
                exporter = "first_median_s" in v  # its cpu: start-up and both scrapes
                ratio = (f" ({v['median_s'] / ref['median_s']:.2f}x"
                         + ("" if exporter else f", cpu {v['cpu_s'] / ref['cpu_s']:.2f}x") + ")"
                         if ref.get("median_s") and name != "C reference" else "")
                first = f", first {v['first_median_s']:.2f} s" if "first_median_s" in v else ""
                runs = f" [{v['runs']}]" if v["runs"] != 3 else ""
                cells.append(f"{v['median_s']:.2f} s{ratio}, cpu {v['cpu_s']:.2f} s, "
                             f"{v['peak_rss_mib']:.0f} MiB{first}{runs}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_table(res: dict) -> None:
    rows_ = res["rows"]
    ref = rows_.get("C reference", {}).get("median_s")
    ref_cpu = rows_.get("C reference", {}).get("cpu_s")
    print(f"\n{res['sockets']} TCP sockets ({res['date']}); after: {res['after']}")
    for name, v in rows_.items():
        if "timeout_s" in v:
            print(f"  {name:26s} > {v['timeout_s']:.0f} s (stopped)")
            continue
        if "error" in v:
            print(f"  {name:26s} failed: {v['error']}")
            continue
        ratio = f"{v['median_s'] / ref:5.2f}x C" if ref else ""
        cpu = f"cpu {v['cpu_s']:6.2f} s" + (f" {v['cpu_s'] / ref_cpu:5.2f}x C" if ref_cpu else "")
        first = f"  first {v['first_median_s']:.2f} s" if "first_median_s" in v else ""
        print(f"  {name:26s} {v['median_s']:8.2f} s {ratio}  {cpu}  peak RSS "
              f"{v['peak_rss_mib']:7.1f} MiB{first}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
