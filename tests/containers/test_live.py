"""A real process in a real cgroup named like a runtime's, with real CLOSE_WAIT
sockets: `sockets -p`, the doctor and watch name its container and pod.

The runtime's files (containerd's task config.json, docker's config.v2.json)
are written under a test root that HALFOPEN_HOST_ROOT points at, as a
DaemonSet points it at the node's filesystem mounted under /host.
"""

from __future__ import annotations

import json
import secrets
import subprocess

from tests import helpers

from halfopen.collect import containers

from .conftest import install

# Container ids fresh per run: another checkout's tests may run these at the same
# time, and its processes' cgroups must not name containers our runtime files know.
POD_ID = secrets.token_hex(32)
POD_UID = "005f082b-5fd9-4650-8ef4-473e63bc2d13"  # the recorded config.json's
DOCKER_ID = secrets.token_hex(32)
POD_SLICE = (f"kubepods.slice/kubepods-burstable.slice/"
             f"kubepods-burstable-pod{POD_UID.replace('-', '_')}.slice/"
             f"cri-containerd-{POD_ID}.scope")


def run_halfopen(*args: str, root: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return helpers.run_halfopen(*args, env={"COLUMNS": "250", containers.HOST_ROOT_ENV: root},
                                timeout=timeout)


def owned_by(doc: dict, pid: int) -> list[dict]:
    return [s for s in doc["sockets"] if any(o["pid"] == pid for o in s.get("owners", ()))]


def in_pod(cgroup2, leakers, node_root):
    install(node_root, f"{containers.CONTAINERD_TASKS}/{POD_ID}/config.json",
            "containerd-config.json")
    leaker = leakers.start(initial=12)  # WARN_COUNT of close-wait-leak: 10
    cgroup2.move(leaker.pid, cgroup2.make(POD_SLICE))
    return leaker


def test_sockets_show_the_pod(cgroup2, leakers, node_root):
    leaker = in_pod(cgroup2, leakers, node_root)
    with open(f"/proc/{leaker.pid}/cgroup") as f:
        assert f"/{POD_SLICE}\n" in f.read()  # the kernel's own line, as a kubelet leaves it
    r = run_halfopen("sockets", "-p", "--json", "--netns-pid", str(leaker.pid), root=node_root)
    assert r.returncode == 0, r.stderr
    mine = owned_by(json.loads(r.stdout), leaker.pid)
    assert len(mine) == 13  # the listener and 12 CLOSE_WAIT
    for s in mine:
        owner = next(o for o in s["owners"] if o["pid"] == leaker.pid)
        assert owner["container"] == {"runtime": "containerd", "id": POD_ID, "name": "nginx",
                                      "pod": "web-7f9", "pod_namespace": "shop",
                                      "pod_uid": POD_UID}
        assert s["netns"] == "pod:shop/web-7f9"  # unnamed namespace, named after its pod

    by_name = run_halfopen("sockets", "--json", "--netns", "pod:shop/web-7f9", root=node_root)
    assert by_name.returncode == 0, by_name.stderr
    assert {s["inode"] for s in json.loads(by_name.stdout)["sockets"]} >= \
        {s["inode"] for s in mine}
    gone = run_halfopen("sockets", "--netns", "pod:shop/nothing", root=node_root)
    assert gone.returncode == 64 and len(gone.stderr.strip().splitlines()) == 1

    table = run_halfopen("sockets", "-p", "--netns-pid", str(leaker.pid), "state", "close-wait",
                         root=node_root)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[-1] == "Container"
    assert len(rows) == 12 and all(row.endswith("shop/web-7f9/nginx") for row in rows)


def test_container_filter_word(cgroup2, leakers, node_root):
    leaker = in_pod(cgroup2, leakers, node_root)
    other = leakers.start(initial=2)  # on the host's cgroups: no container
    for word, pid, want in (("web-7f9", leaker.pid, 13), ("shop/web-7f9", leaker.pid, 13),
                            (POD_ID[:12], leaker.pid, 13), ("nginx", leaker.pid, 13),
                            ("web-7f9", other.pid, 0), ("shop/other", leaker.pid, 0)):
        r = run_halfopen("sockets", "--json", "--netns-pid", str(pid), "container", word,
                         root=node_root)
        assert r.returncode == 0, r.stderr
        assert len(owned_by(json.loads(r.stdout), pid)) == want, word
    for pid, want in ((leaker.pid, 0), (other.pid, 3)):
        r = run_halfopen("sockets", "--netns-pid", str(pid), "not", "container", "web-7f9",
                         "--json", root=node_root)
        assert len(owned_by(json.loads(r.stdout), pid)) == want


def test_doctor_names_the_pod(cgroup2, leakers, node_root):
    leaker = in_pod(cgroup2, leakers, node_root)
    base = ("doctor", "--json", "--netns-pid", str(leaker.pid), "--window", "0",
            "--min-age", "0")
    r = run_halfopen(*base, root=node_root)
    assert r.returncode in (1, 2), r.stderr
    found = [f for f in json.loads(r.stdout)["findings"]
             if f["id"] == "close-wait-leak" and f["subject"].get("pid") == leaker.pid]
    assert len(found) == 1, r.stdout[:2000]
    f = found[0]
    assert f["title"].startswith(f"leaker (pid {leaker.pid}, pod shop/web-7f9) holds 12 ")
    assert f["subject"]["container"]["pod"] == "web-7f9"
    assert f["subject"]["netns"] == "pod:shop/web-7f9"

    def close_wait_pids(*more: str) -> set:
        r = run_halfopen(*base, *more, root=node_root)
        return {f["subject"].get("pid") for f in json.loads(r.stdout)["findings"]
                if f["id"] == "close-wait-leak"}

    assert close_wait_pids("--container", "shop/web-7f9") == {leaker.pid}
    assert close_wait_pids("--container", "shop/other") == set()


def test_watch_shows_the_container(cgroup2, leakers, node_root):
    leaker = in_pod(cgroup2, leakers, node_root)
    r = run_halfopen("watch", "--once", "--no-doctor", "--netns-pid", str(leaker.pid),
                     root=node_root)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if str(leaker.pid) in x.split())
    assert "leaker" in line and "shop/web-7f9/nginx" in line


def test_docker_systemd_scope(cgroup2, leakers, node_root):
    install(node_root, f"{containers.DOCKER_CONTAINERS}/{DOCKER_ID}/config.v2.json",
            "docker-config.v2.json")
    leaker = leakers.start(initial=3)
    cgroup2.move(leaker.pid, cgroup2.make(f"system.slice/docker-{DOCKER_ID}.scope"))
    r = run_halfopen("sockets", "-p", "--json", "--netns-pid", str(leaker.pid), root=node_root)
    mine = owned_by(json.loads(r.stdout), leaker.pid)
    assert len(mine) == 4
    box = mine[0]["owners"][0]["container"]
    assert (box["runtime"], box["id"], box["name"], box["pod"]) == \
        ("docker", DOCKER_ID, "cache-redis-1", "")
    assert mine[0]["netns"].startswith("net:[")  # not a pod: the namespace keeps its inode name
    r = run_halfopen("doctor", "--json", "--netns-pid", str(leaker.pid), "--window", "0",
                     "--min-age", "0", root=node_root)
    titles = [f["title"] for f in json.loads(r.stdout)["findings"] if f["id"] == "close-wait-leak"]
    assert len(titles) == 1
    assert titles[0].startswith(f"leaker (pid {leaker.pid}, docker cache-redis-1) holds 3 CLOSE_WAIT")


def test_docker_cgroupfs_v1(cgroup1, leakers, node_root):
    """cgroup v1 (docker's cgroupfs driver): /docker/<id> in the name=systemd hierarchy;
    no runtime files readable: the container is still named by its id."""
    leaker = leakers.start(initial=2)
    cgroup1.move(leaker.pid, cgroup1.make(f"docker/{DOCKER_ID}"))
    r = run_halfopen("sockets", "-p", "--json", "--netns-pid", str(leaker.pid), root=node_root)
    mine = owned_by(json.loads(r.stdout), leaker.pid)
    assert len(mine) == 3
    assert mine[0]["owners"][0]["container"] == {
        "runtime": "docker", "id": DOCKER_ID, "name": "", "pod": "", "pod_namespace": "",
        "pod_uid": ""}
    table = run_halfopen("sockets", "-p", "--netns-pid", str(leaker.pid), root=node_root)
    assert f"docker:{DOCKER_ID[:12]}" in table.stdout


def test_keepalive_by_container(cgroup2, leakers, node_root):
    leaker = in_pod(cgroup2, leakers, node_root)
    r = run_halfopen("keepalive", "--container", "shop/web-7f9", "--json", root=node_root)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["pid"] == leaker.pid and doc["dry_run"] and len(doc["sockets"]) == 13
    r = run_halfopen("keepalive", "--container", "shop/nothing", root=node_root)
    assert r.returncode == 64 and "no process holding sockets" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_trace_names_the_pod_of_each_event(cgroup2, leakers, node_root, tracefs_restored):
    """`halfopen trace` in the pod's network namespace: the leaks it sees while tracing
    (the peer's FIN: established -> close-wait) are joined to the leaker's pid and its
    container, and `--container` keeps exactly them."""
    install(node_root, f"{containers.CONTAINERD_TASKS}/{POD_ID}/config.json",
            "containerd-config.json")
    leaker = leakers.start(initial=2, rate=4)  # 4 new CLOSE_WAIT a second, in its own netns
    cgroup2.move(leaker.pid, cgroup2.make(POD_SLICE))
    r = helpers.run_halfopen("trace", "--container", "shop/web-7f9", "--duration", "4", "--jsonl",
                             prefix=("nsenter", f"--net=/proc/{leaker.pid}/ns/net", "--"),
                             env={containers.HOST_ROOT_ENV: node_root}, timeout=60)
    assert r.returncode == 0, r.stderr
    evs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    fins = [e for e in evs if e["event"] == "state" and e["to"] == "close-wait"]
    assert len(fins) >= 4, evs  # about 16 in 4 s; the first second's owner lookups may miss some
    assert {(e["pid"], e["comm"], e.get("container")) for e in fins} == \
        {(leaker.pid, "leaker", "shop/web-7f9/nginx")}, fins
