"""Start-up time of the one-file pyz against a venv install (and ss as the floor).

    python3 bench/startup.py [--pyz dist/halfopen.pyz] [--venv build/startup-venv] [--runs 30]

Times `halfopen --version` (the interpreter, the zip or the venv, click) and
`halfopen sockets state listening` (a real dump: the sockets command's whole
import chain) as the wall time of a fresh process, output to /dev/null,
round-robin so background noise spreads evenly over the variants. The venv is
made with `pip install .` from this checkout when it does not exist (a normal
install: bytecode compiled at install time). Prints median and 90th percentile
in ms, and the pyz/venv ratio of the medians (the target: at most 1.5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {"--version": ["--version"], "sockets": ["sockets", "state", "listening"]}


def ensure_venv(venv: str, python: str) -> str:
    exe = os.path.join(venv, "bin", "halfopen")
    if not os.path.exists(exe):
        subprocess.run([python, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "-q", "install",
                        "--disable-pip-version-check", ROOT], check=True)
    return exe


def once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pyz", default=os.path.join(ROOT, "dist", "halfopen.pyz"))
    ap.add_argument("--venv", default=os.path.join(ROOT, "build", "startup-venv"))
    ap.add_argument("--python", default=shutil.which("python3") or sys.executable,
                    help="the interpreter that runs the pyz and makes the venv")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    if not os.path.exists(args.pyz):
        sys.exit(f"startup: no {args.pyz}: run scripts/build-pyz first")
    venv = ensure_venv(args.venv, args.python)
    version = subprocess.run([args.python, "-V"], capture_output=True, text=True).stdout.strip()
    print(f"{version}, {args.runs} runs each, wall time of a fresh process (ms)")
    print(f"{'command':<10} {'variant':<6} {'median':>7} {'p90':>7}")
    for name, tail in COMMANDS.items():
        variants = {"pyz": [args.python, args.pyz, *tail], "venv": [venv, *tail]}
        if name == "sockets" and shutil.which("ss"):
            variants["ss"] = ["ss", "-tln"]
        for argv in variants.values():  # warm the page cache first
            once(argv)
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.runs):
            for v, argv in variants.items():
                times[v].append(once(argv))
        for v, ts in times.items():
            p90 = statistics.quantiles(ts, n=10)[-1]
            print(f"{name:<10} {v:<6} {statistics.median(ts):7.1f} {p90:7.1f}")
        ratio = statistics.median(times["pyz"]) / statistics.median(times["venv"])
        print(f"{name:<10} pyz/venv {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
