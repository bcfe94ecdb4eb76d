"""Record the /proc files the host parsers read into tests/host/data/proc.

Run as root on a real kernel: `python3 tests/host/record.py`. The tree it
writes replays with collect_host(proc="tests/host/data/proc", window=0).
"""

from __future__ import annotations

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = [
    "net/netstat", "net/snmp", "net/sockstat", "net/sockstat6", "net/stat/nf_conntrack",
    "net/tcp", "net/tcp6", "net/udp", "net/unix", "net/packet", "net/raw",
    "sys/fs/file-nr", "sys/fs/file-max", "sys/fs/nr_open", "meminfo", "stat",
]


def record(out: str = os.path.join(HERE, "data", "proc"), proc: str = "/proc") -> None:
    from halfopen.model.host import TUNABLE_FIELDS
    files = FILES + [f"sys/{name.replace('.', '/')}" for name in TUNABLE_FIELDS]
    nf = f"{proc}/sys/net/netfilter"
    if os.path.isdir(nf):
        files += [f"sys/net/netfilter/{n}" for n in os.listdir(nf)
                  if n.startswith("nf_conntrack_tcp_timeout_")
                  or n in ("nf_conntrack_count", "nf_conntrack_max", "nf_conntrack_buckets")]
    for rel in files:
        src = f"{proc}/{rel}"
        if not os.path.exists(src):
            continue
        dst = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
    # one process: its limits (the fd dir is not recorded)
    os.makedirs(os.path.join(out, "1"), exist_ok=True)
    shutil.copyfile(f"{proc}/self/limits", os.path.join(out, "1", "limits"))
    # a few raw /dev/kmsg records, one per line
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    recs = []
    try:
        while len(recs) < 20:
            try:
                rec = os.read(fd, 8192).decode("utf-8", "replace").split("\n")[0]
            except BrokenPipeError:  # overwritten before we read it
                continue
            except BlockingIOError:
                break
            if "Command line" not in rec:  # the boot command line is not ours to keep
                recs.append(rec)
    finally:
        os.close(fd)
    with open(os.path.join(HERE, "data", "kmsg.txt"), "w") as f:
        f.write("\n".join(recs) + "\n")


if __name__ == "__main__":
    record(*sys.argv[1:])
