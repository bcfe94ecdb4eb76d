"""The exporter keys a pod's process by container and pod name, which survive the
container's restart: a leaking process in a real cgroup named as the kubelet and
containerd name it (the runtime's config.json under HALFOPEN_HOST_ROOT), killed and
started again as a new container (new pid, new container id) in the same pod and
network namespace, keeps its series; only halfopen_process_info changes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request

from tests.helpers import start_halfopen, wait_for

from containers.conftest import Cgroups, install
from containers.test_live import POD_ID, POD_SLICE
from halfopen.collect import containers

from .conftest import LEAKER, free_port, stop

SECOND_ID = "9d4e6f1b0c8e5d3f2a7b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f"


def start_in(netns: str, cgroup: str, initial: int) -> subprocess.Popen:
    """A leaker in the namespace, in the cgroup from its first instruction (preexec)."""
    def join() -> None:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write("0")

    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, str(LEAKER),
                             "--initial", str(initial)], stdout=subprocess.PIPE, text=True,
                            preexec_fn=join)
    assert proc.stdout.readline().startswith("ready "), "leaker did not start"
    return proc


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        return r.read().decode()


def pod_close_wait(text: str) -> list[tuple[str, str]]:
    return re.findall(r'^halfopen_process_sockets\{comm="leaker",(container_name="nginx",'
                      r'pod_name="web-7f9",pod_namespace="shop",state="close_wait",unit="")\} (\S+)$',
                      text, re.M)


def info_pids(text: str) -> set[str]:
    return set(re.findall(r'^halfopen_process_info\{comm="leaker",container_name="nginx",'
                          r'pid="(\d+)",pod_name="web-7f9",pod_namespace="shop",unit=""\} 1.0$',
                          text, re.M))


def test_a_container_restart_in_its_pod_keeps_the_series(cgroup2: Cgroups, node_root, netns):
    for cid in (POD_ID, SECOND_ID):
        install(node_root, f"{containers.CONTAINERD_TASKS}/{cid}/config.json",
                "containerd-config.json")
    first_cg = cgroup2.make(POD_SLICE)
    second_cg = cgroup2.make(POD_SLICE.replace(POD_ID, SECOND_ID))
    leakers = [start_in(netns, first_cg, 12)]
    port = free_port()
    exporter = start_halfopen("exporter", "--listen", f"127.0.0.1:{port}", "--netns", netns,
                              "--no-doctor", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={containers.HOST_ROOT_ENV: node_root})
    try:
        def serving() -> str | None:
            try:
                return scrape(port)
            except OSError:
                return None

        before = wait_for("the exporter", serving, timeout=60, step=0.5)
        assert pod_close_wait(before) == [(pod_close_wait(before)[0][0], "12.0")], before
        assert info_pids(before) == {str(leakers[0].pid)}
        assert re.search(r'^halfopen_sockets\{netns="' + re.escape(netns) +
                         r'",state="close_wait"\} 12.0$', before, re.M)

        leakers[0].kill()
        leakers[0].wait(10)
        leakers.append(start_in(netns, second_cg, 7))  # the container restarted: new id, pid
        after = wait_for("the new container scraped", lambda: (lambda t: t if info_pids(t) == {
            str(leakers[1].pid)} else None)(scrape(port)), timeout=120, step=1)
        assert pod_close_wait(after) == [(pod_close_wait(before)[0][0], "7.0")]  # same labels
        assert not re.search(r'^halfopen_process_sockets\{comm="leaker",container_name="(?!nginx)',
                             after, re.M)
    finally:
        stop(exporter)
        for p in leakers:
            if p.poll() is None:
                p.kill()
            p.wait(10)
