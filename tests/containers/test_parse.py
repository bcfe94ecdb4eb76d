"""Container attribution from recorded /proc/PID/cgroup texts and runtime files.

The cgroup texts are as each runtime leaves them (cgroup v2 "0::PATH" and
v1 "N:CONTROLLERS:PATH" lines); the runtime files in data/ follow the
runtimes' own formats (containerd's CRI annotations, cri-o's annotations,
docker's config.v2.json, containers/storage's containers.json).
"""

from __future__ import annotations

import os

import pytest

from halfopen.collect import containers
from halfopen.model.container import Container

from .conftest import DATA, install

ID = "8c3f5e0a9b7d4c2e1f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e"
UID = "005f082b-5fd9-4650-8ef4-473e63bc2d13"
SLICE_UID = UID.replace("-", "_")

V1_CONTROLLERS = ("12:pids", "11:memory", "10:cpu,cpuacct", "9:devices", "8:blkio",
                  "1:name=systemd")


def v1(path: str) -> str:
    return "".join(f"{c}:{path}\n" for c in V1_CONTROLLERS) + "0::/\n"


# (runtime, cgroup text, expected (runtime, id, name, pod_uid))
RECORDED = [
    ("docker, systemd driver, cgroup v2",
     f"0::/system.slice/docker-{ID}.scope\n", ("docker", ID, "", "")),
    ("docker, cgroupfs driver, cgroup v1",
     v1(f"/docker/{ID}"), ("docker", ID, "", "")),
    ("docker, cgroupfs driver, cgroup v2",
     f"0::/docker/{ID}\n", ("docker", ID, "", "")),
    ("containerd CRI, systemd driver, burstable",
     f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{SLICE_UID}.slice/"
     f"cri-containerd-{ID}.scope\n", ("containerd", ID, "", UID)),
    ("containerd CRI, systemd driver, guaranteed",
     f"0::/kubepods.slice/kubepods-pod{SLICE_UID}.slice/cri-containerd-{ID}.scope\n",
     ("containerd", ID, "", UID)),
    ("containerd CRI, systemd driver, besteffort, cgroup v1",
     v1(f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{SLICE_UID}.slice/"
        f"cri-containerd-{ID}.scope"), ("containerd", ID, "", UID)),
    ("Kubernetes, cgroupfs driver, burstable",
     f"0::/kubepods/burstable/pod{UID}/{ID}\n", ("cri", ID, "", UID)),
    ("Kubernetes, cgroupfs driver, guaranteed, cgroup v1",
     v1(f"/kubepods/pod{UID}/{ID}"), ("cri", ID, "", UID)),
    ("Kubernetes static pod (uid is the manifest hash)",
     f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
     f"c2f9a2a5b7f14b2b8c1d0e9f8a7b6c5d.slice/cri-containerd-{ID}.scope\n",
     ("containerd", ID, "", "c2f9a2a5b7f14b2b8c1d0e9f8a7b6c5d")),
    ("seen from inside a pod's cgroup namespace",
     f"0::/../../kubepods-besteffort-pod{SLICE_UID}.slice/cri-containerd-{ID}.scope\n",
     ("containerd", ID, "", UID)),
    ("cgroupfs driver, seen from inside a cgroup namespace",
     f"0::/../../burstable/pod{UID}/{ID}\n", ("cri", ID, "", UID)),
    ("cri-o, systemd driver",
     f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{SLICE_UID}.slice/"
     f"crio-{ID}.scope\n", ("cri-o", ID, "", UID)),
    ("cri-o, cgroupfs driver",
     f"0::/kubepods/besteffort/pod{UID}/crio-{ID}\n", ("cri-o", ID, "", UID)),
    ("cri-o with a cgroup namespace: the payload below the scope",
     f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{SLICE_UID}.slice/"
     f"crio-{ID}.scope/container\n", ("cri-o", ID, "", UID)),
    ("podman rootful, systemd",
     f"0::/machine.slice/libpod-{ID}.scope\n", ("podman", ID, "", "")),
    ("podman rootful, its cgroup namespace's inner group",
     f"0::/machine.slice/libpod-{ID}.scope/container\n", ("podman", ID, "", "")),
    ("podman rootless",
     f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n",
     ("podman", ID, "", "")),
    ("podman, cgroupfs manager, cgroup v1",
     v1(f"/libpod_parent/libpod-{ID}"), ("podman", ID, "", "")),
    ("systemd-nspawn payload",
     "0::/machine.slice/machine-debian.scope/payload\n", ("nspawn", "debian", "debian", "")),
    ("systemd-nspawn, escaped name",
     "0::/machine.slice/machine-build\\x2d7.scope\n", ("nspawn", "build-7", "build-7", "")),
    ("LXC 4+",
     "0::/lxc.payload.u1/init.scope\n", ("lxc", "u1", "u1", "")),
    ("LXC 3, cgroup v1",
     v1("/lxc/u1"), ("lxc", "u1", "u1", "")),
]

NOT_CONTAINERS = [
    ("host service", "0::/system.slice/nginx.service\n"),
    ("login session, v1 and v2", v1("/user.slice/user-0.slice/session-3.scope")),
    ("root cgroup", "0::/\n"),
    ("the docker daemon itself", "0::/system.slice/docker.service\n"),
    ("the containerd shim", "0::/system.slice/containerd.service\n"),
    ("cri-o's conmon", f"0::/kubepods.slice/crio-conmon-{ID}.scope\n"),
    ("podman's conmon", f"0::/machine.slice/libpod-conmon-{ID}.scope\n"),
    ("LXC's monitor", "0::/lxc.monitor.u1\n"),
    ("a pod's own cgroup, no container", f"0::/kubepods/burstable/pod{UID}\n"),
    ("an id too short", "0::/system.slice/docker-3f4e1b2c.scope\n"),
    ("an id with a path in it", "0::/docker/..%2f..%2fetc\n"),
    ("a name with a terminal escape", "0::/lxc.payload.\x1b[31mred\n"),
    ("pod dir outside kubepods", f"0::/srv/pod{UID}/{ID}\n"),
    ("empty", ""),
]


@pytest.mark.parametrize("what,text,want", RECORDED, ids=[r[0] for r in RECORDED])
def test_recorded_cgroup_lines(what, text, want):
    got = containers.parse_cgroup(text)
    assert got is not None, what
    assert (got.runtime, got.id, got.name, got.pod_uid) == want


@pytest.mark.parametrize("what,text", NOT_CONTAINERS, ids=[r[0] for r in NOT_CONTAINERS])
def test_not_containers(what, text):
    assert containers.parse_cgroup(text) is None, what


def test_outermost_container_wins():
    """Docker in a pod: the pod is what the node's operator asks about, and a
    container may create cgroups below its own, never above."""
    inner = "d0" * 32
    text = (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{SLICE_UID}"
            f".slice/cri-containerd-{ID}.scope/docker/{inner}\n")
    got = containers.parse_cgroup(text)
    assert (got.runtime, got.id) == ("containerd", ID)


def test_v2_line_first_then_v1():
    other = "f1" * 32
    text = f"4:memory:/docker/{other}\n0::/system.slice/docker-{ID}.scope\n"
    assert containers.parse_cgroup(text).id == ID


# ---------------------------------------------------------------- runtime files

def named(root, c: Container) -> Container:
    return containers.Resolver(root=str(root)).named(c)


def test_containerd_names_from_cri_annotations(tmp_path):
    install(tmp_path, f"{containers.CONTAINERD_TASKS}/{ID}/config.json", "containerd-config.json")
    got = named(tmp_path, Container("containerd", ID, pod_uid=UID))
    assert got == Container("containerd", ID, "nginx", "web-7f9", "shop", UID)
    assert got.phrase() == "pod shop/web-7f9" and got.text() == "shop/web-7f9/nginx"


def test_containerd_older_annotations(tmp_path):
    install(tmp_path, f"{containers.CONTAINERD_TASKS}/{ID}/config.json",
            "containerd-old-config.json")
    got = named(tmp_path, Container("containerd", ID))
    assert (got.name, got.pod, got.pod_namespace, got.pod_uid) == ("nginx", "web-7f9", "shop", UID)


def test_cgroupfs_driver_finds_its_runtime(tmp_path):
    """/kubepods/burstable/pod<uid>/<id> says no runtime: its files do."""
    crio_id = "2d9b0e1c7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d"
    install(tmp_path, f"{containers.CRIO_STATE[0]}/{crio_id}/userdata/config.json",
            "crio-config.json")
    got = named(tmp_path, Container("cri", crio_id))
    assert (got.runtime, got.name, got.pod, got.pod_namespace) == \
        ("cri-o", "api", "orders-6c5d", "billing")
    assert named(tmp_path, Container("cri", ID)) == Container("cri", ID)  # none found


def test_crio_labels_json_alone(tmp_path):
    """Only io.kubernetes.cri-o.Labels (the kubelet's labels as a JSON string)."""
    import json
    with open(os.path.join(DATA, "crio-config.json")) as f:
        spec = json.load(f)
    spec["annotations"] = {k: v for k, v in spec["annotations"].items()
                           if not k.startswith("io.kubernetes.pod.")
                           and k != "io.kubernetes.container.name"}
    path = tmp_path / "var/lib/containers/storage/overlay-containers" / ID / "userdata"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(spec))
    got = named(tmp_path, Container("cri-o", ID))
    assert (got.name, got.pod, got.pod_namespace) == ("api", "orders-6c5d", "billing")


def test_docker_name_and_cri_dockerd_labels(tmp_path):
    did = "3f4e1b2c9a0d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
    install(tmp_path, f"{containers.DOCKER_CONTAINERS}/{did}/config.v2.json",
            "docker-config.v2.json")
    got = named(tmp_path, Container("docker", did))
    assert got == Container("docker", did, "cache-redis-1")
    assert got.phrase() == "docker cache-redis-1" and got.text() == "docker:cache-redis-1"
    kid = "b1" * 32
    install(tmp_path, f"{containers.DOCKER_CONTAINERS}/{kid}/config.v2.json",
            "cri-dockerd-config.v2.json")
    got = named(tmp_path, Container("cri", kid))
    assert (got.runtime, got.name, got.pod, got.pod_namespace) == \
        ("docker", "web", "frontend-5d8", "default")


def test_podman_name_from_containers_json(tmp_path):
    install(tmp_path, containers.PODMAN_LIST, "podman-containers.json")
    got = named(tmp_path, Container("podman", "e5" * 32))
    assert got.name == "grafana" and got.text() == "podman:grafana"


def test_unsafe_files_are_not_read(tmp_path):
    """A symlink, a FIFO, an oversized file, bad JSON: no name, no hang, no error."""
    install(tmp_path, "elsewhere.json", "docker-config.v2.json")
    base = tmp_path / containers.DOCKER_CONTAINERS
    ids = ["a1" * 32, "a2" * 32, "a3" * 32, "a4" * 32]
    for i in ids:
        (base / i).mkdir(parents=True)
    (base / ids[0] / "config.v2.json").symlink_to(tmp_path / "elsewhere.json")
    os.mkfifo(base / ids[1] / "config.v2.json")
    (base / ids[2] / "config.v2.json").write_text(
        '{"Name": "/big", "pad": "' + "x" * containers.MAX_BYTES + '"}')
    (base / ids[3] / "config.v2.json").write_text('{"Name": "/half')
    for i in ids:
        assert named(tmp_path, Container("docker", i)) == Container("docker", i)


def test_unsafe_names_are_dropped(tmp_path):
    import json
    did = "c3" * 32
    path = tmp_path / containers.DOCKER_CONTAINERS / did
    path.mkdir(parents=True)
    (path / "config.v2.json").write_text(json.dumps({"Name": "/x\u001b[2J", "Config": {
        "Labels": {"io.kubernetes.pod.name": "a b"}}}))
    assert named(tmp_path, Container("docker", did)) == Container("docker", did)


def test_resolver_reads_a_real_cgroup_file(tmp_path):
    """of_pid on a recorded /proc tree: names once per container, cached."""
    install(tmp_path, f"root/{containers.CONTAINERD_TASKS}/{ID}/config.json",
            "containerd-config.json")
    for pid in (10, 11):
        d = tmp_path / "proc" / str(pid)
        d.mkdir(parents=True)
        (d / "cgroup").write_text(RECORDED[3][1])
    r = containers.Resolver(proc=str(tmp_path / "proc"), root=str(tmp_path / "root"))
    a, b = r.of_pid(10), r.of_pid(11)
    assert a is b and a.pod == "web-7f9"
    assert r.of_pid(12) is None  # no such process


def test_host_root_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(containers.HOST_ROOT_ENV, str(tmp_path))
    assert containers.Resolver().root == str(tmp_path)
    monkeypatch.delenv(containers.HOST_ROOT_ENV)
    assert containers.Resolver().root == "/"


def test_matches():
    c = Container("containerd", ID, "nginx", "web-7f9", "shop", UID)
    for word in ("nginx", "web-7f9", "shop/web-7f9", ID, ID[:12], ID[:4], ID[:12].upper()):
        assert c.matches(word), word
    for word in ("", "ngin", ID[:3], "shop", "other/web-7f9", ID[1:13]):
        assert not c.matches(word), word
    lxc = Container("lxc", "u1", "u1")
    assert lxc.matches("u1") and not lxc.matches("u")


def test_round_trip():
    c = Container("cri-o", ID, "api", "orders-6c5d", "billing", UID)
    assert Container.from_dict(c.to_dict()) == c
