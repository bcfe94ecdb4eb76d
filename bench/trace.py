"""`halfopen trace` vs trace-cmd (C) reading the same events, at fixed connection rates.

    python3 bench/trace.py [--rates 1000,2500,5000] [--seconds 5]

For each rate and each reader: the reader starts on its own tracefs instance
with the same events and kernel filters (the port of the load), a load process
opens and closes loopback connections at the rate for the given seconds (about
10 events a connection), the reader is stopped with SIGINT, and its CPU time
(user + system, itself and its children, wait4) and the lost events the kernel
counted (per-CPU stats: overrun + dropped) are recorded. Run as root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE_FILTER = "protocol == 6 && (oldstate == 1 || newstate == 1 || oldstate == 8 || newstate == 7)"


def load(port: int, rate: float, seconds: float) -> None:
    """Open and close connections to 127.0.0.1:port at `rate` a second."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    start = time.monotonic()
    done = 0
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        due = int((now - start) * rate)
        if done >= due:
            time.sleep(0.001)
            continue
        for _ in range(due - done):
            c = socket.create_connection(("127.0.0.1", port))
            s, _ = listener.accept()
            c.close()
            s.close()
            done += 1
    print(json.dumps({"connections": done, "seconds": time.monotonic() - start}), flush=True)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _run(reader: list[str], port: int, rate: float, seconds: float, env: dict) -> tuple[dict, str, str]:
    tool = subprocess.Popen(reader, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(2.0)  # instance made, events enabled
    gen = subprocess.run([sys.executable, __file__, "load", str(port), str(rate), str(seconds)],
                         capture_output=True, text=True, check=True)
    time.sleep(0.5)
    tool.send_signal(signal.SIGINT)
    _pid, _status, usage = os.wait4(tool.pid, 0)
    out = tool.stdout.read() if tool.stdout else ""
    err = tool.stderr.read() if tool.stderr else ""
    tool.returncode = 0
    info = json.loads(gen.stdout)
    info["cpu_s"] = usage.ru_utime + usage.ru_stime
    return info, out, err


SRC = os.path.join(ROOT, "src")  # --src: another checkout's, to compare two readers


def run_halfopen(port: int, rate: float, seconds: float) -> dict:
    env = dict(os.environ, PYTHONPATH=SRC)
    info, out, err = _run([sys.executable, "-m", "halfopen", "trace", "--port", str(port),
                           "--summary", "--json"], port, rate, seconds, env)
    doc = json.loads(out)
    info.update(events=doc["events_read"], lost=doc["lost_events"])
    return info


def run_trace_cmd(port: int, rate: float, seconds: float) -> dict:
    ports = f"(sport == {port} || dport == {port})"
    with tempfile.TemporaryDirectory() as tmp:
        data = f"{tmp}/trace.dat"
        argv = ["trace-cmd", "record", "-B", f"bench-trace-cmd-{os.getpid()}", "-C", "mono", "-o", data,
                "-e", "sock:inet_sock_set_state", "-f", f"{STATE_FILTER} && {ports}",
                "-e", "tcp:tcp_send_reset",
                "-e", "tcp:tcp_receive_reset", "-f", ports,
                "-e", "tcp:tcp_retransmit_skb", "-f", ports,
                "-e", "tcp:tcp_destroy_sock", "-f", ports,
                "-e", "syscalls:sys_enter_close"]
        info, out, err = _run(argv, port, rate, seconds, dict(os.environ))
        text = out + err
        lost = sum(int(n) for n in re.findall(r"(?:overrun|dropped events):\s*(\d+)", text))
        stat = subprocess.run(["trace-cmd", "report", "-q", "-i", data], capture_output=True, text=True)
        info.update(events=sum(1 for line in stat.stdout.splitlines() if ": " in line and "[" in line),
                    lost=lost)
    return info


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="1000,2500,5000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--with-trace-cmd", action="store_true",
                    help="also trace-cmd record (fails on hosts where it may not write "
                         "/proc/sys/kernel/ftrace_enabled or set_ftrace_filter: BENCHMARKS.md)")
    ap.add_argument("--src", help="halfopen's source tree to run (default: this checkout's src)")
    args = ap.parse_args()
    global SRC
    SRC = args.src or SRC
    readers = [("halfopen", run_halfopen)]
    if args.with_trace_cmd:
        readers.append(("trace-cmd", run_trace_cmd))
    print("| rate asked | reader | connections/s done | events read | lost | CPU s | CPU s per 100k events | share of a core |")
    print("|---|---|---|---|---|---|---|---|")
    for rate in (float(r) for r in args.rates.split(",")):
        for name, fn in readers:
            r = fn(_free_port(), rate, args.seconds)
            per = r["cpu_s"] / r["events"] * 100_000 if r["events"] else float("nan")
            print(f"| {rate:.0f}/s | {name} | {r['connections'] / r['seconds']:.0f} | {r['events']} | {r['lost']} "
                  f"| {r['cpu_s']:.2f} | {per:.2f} | {r['cpu_s'] / (r['seconds'] + 2.5):.2f} |", flush=True)


if __name__ == "__main__":
    main()
