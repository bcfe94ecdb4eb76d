"""Two source trees of halfopen side by side, round-robin in one namespace (issue 25).

    python3 bench/compare.py OLD_SRC NEW_SRC [--sockets 100000] [--runs 3] [--json FILE]

bench/scale.py's machinery (the namespace, the workers, the C reference,
the launcher that reports peak RSS and CPU time), with the listing and the
doctor rows once per tree, each run as `python -m halfopen` with that tree
first on PYTHONPATH. The rows of both trees alternate within each round, so
a loaded machine's swings fall on both alike: on a shared host the ratios of
one run say more than two runs minutes apart. Compile both trees first
(`python -m compileall -q OLD_SRC NEW_SRC`): with PYTHONDONTWRITEBYTECODE
set, as in some shells, every run would compile halfopen from source (0.1 s
and more a run, which an installed copy never pays). `--markdown` of
bench/scale.py prints the saved file as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scale  # noqa: E402
from run import count_tcp_sockets, create_netns, in_netns, start_workers, stop_workers  # noqa: E402


def launcher(workdir: str, name: str, src: str) -> str:
    """A `halfopen`-like command running the tree at `src` with this Python."""
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nPYTHONPATH={os.path.abspath(src)} exec {sys.executable} "
                '-m halfopen "$@"\n')
    os.chmod(path, 0o755)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="the first tree's src directory")
    ap.add_argument("new", help="the second tree's src directory")
    ap.add_argument("--sockets", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = tempfile.mkdtemp(prefix="halfopen-compare-")
    try:
        scale.MAXRSS = scale.build(workdir, "maxrss")
        table: dict[str, dict] = {"C reference": {"argv": [scale.build(workdir, "cref")]},
                                  "ss -tan": {"argv": ["ss", "-tan"]}}
        for label, src in (("old", a.old), ("new", a.new)):
            tool = launcher(workdir, f"halfopen-{label}", src)
            table[f"sockets -p -i --jsonl ({label})"] = {
                "argv": [tool, "sockets", "-p", "-i", "--jsonl"]}
            table[f"doctor --json --window 0 ({label})"] = {
                "argv": [tool, "doctor", "--json", "--window", "0"], "ok": scale.DOCTOR_CODES}
        netns = create_netns()
        try:
            subprocess.run(in_netns(netns, ["sysctl", "-qw",
                                            "net.ipv4.ip_local_port_range=10000 65000"]),
                           check=True)
            workers = start_workers(netns, a.sockets // 2)
            try:
                total = count_tcp_sockets(netns)
                before = scale.load_report()
                print(f"== {total} TCP sockets, {len(workers)} workers; {before}", flush=True)
                got = scale.measure(netns, table, a.runs, 600.0, set())
                after = scale.load_report()
            finally:
                stop_workers(workers)
        finally:
            subprocess.run(["ip", "netns", "del", netns], check=False)
        result = {"target": a.sockets, "sockets": total, "workers": len(workers),
                  "before": before, "after": after, "rows": got,
                  "old": os.path.abspath(a.old), "new": os.path.abspath(a.new),
                  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        scale.print_table(result)
        if a.json:
            with open(a.json, "w") as f:
                json.dump([result], f, indent=2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
