"""Which container a process runs in: its cgroup path, then the runtime's own files.

/proc/PID/cgroup has one line per hierarchy, "ID:CONTROLLERS:PATH"
(kernel/cgroup/cgroup.c, proc_cgroup_show); cgroup v2's line is "0::PATH".
Each runtime names the cgroup it makes for a container in its own way:

    docker       /system.slice/docker-<id>.scope          (systemd driver)
                 /docker/<id>                             (cgroupfs driver)
    containerd   /kubepods.slice/kubepods-burstable.slice/
                   kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
    Kubernetes   /kubepods/burstable/pod<uid>/<id>        (cgroupfs driver: any runtime)
    cri-o        .../kubepods-besteffort-pod<uid_>.slice/crio-<id>.scope
    podman       /machine.slice/libpod-<id>.scope, /libpod_parent/libpod-<id>
    nspawn       /machine.slice/machine-<name>.scope      (systemd-machined)
    lxc          /lxc.payload.<name> (LXC 4+), /lxc/<name>

<id> is 64 hex digits; systemd slice names write the pod uid's dashes as
underscores. The outermost match wins: a container can create cgroups below
its own (Docker in Docker, or one named to look like another container's),
never above it. The runtimes' conmon and monitor cgroups (crio-conmon-<id>,
lxc.monitor.<name>) hold host-side helpers, not the container.

Pod and container names come from the runtime's files on the node, so no
API server is needed:

    containerd   /run/containerd/io.containerd.runtime.v2.task/k8s.io/<id>/config.json
                 (the OCI bundle; annotations io.kubernetes.cri.sandbox-name,
                 -sandbox-namespace, -sandbox-uid, -container-name)
    cri-o        /run/containers/storage/overlay-containers/<id>/userdata/config.json
                 (annotations io.kubernetes.pod.name, .pod.namespace, .pod.uid,
                 io.kubernetes.container.name)
    docker       /var/lib/docker/containers/<id>/config.v2.json
                 (Name, and Config.Labels io.kubernetes.* under cri-dockerd)
    podman       /var/lib/containers/storage/overlay-containers/containers.json
                 (containers/storage's list: id, names)

They are read as root from directories other programs write, so with care:
the last component is opened O_NOFOLLOW|O_NONBLOCK (fsio.read_file) and
must be a regular file of at most MAX_BYTES, ids are 64 hex digits before they become a path, and names
that are not plain words are dropped. The node's filesystem may be mounted
elsewhere (a DaemonSet mounts it under /host): HALFOPEN_HOST_ROOT says where.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Optional

from .. import fsio
from ..errors import HalfopenError
from ..kernel import procfs
from ..model.container import Container

HOST_ROOT_ENV = "HALFOPEN_HOST_ROOT"
MAX_BYTES = 1 << 20  # an OCI config.json is 5-30 KiB; docker's config.v2.json a few KiB
MAX_LIST_BYTES = 16 << 20  # containers.json lists every container of the host
MAX_CGROUP_BYTES = 64 << 10

_ID = r"[0-9a-f]{64}"
_HEX_ID = re.compile(_ID)
# A container's own cgroup directory -> its runtime.
_SCOPES = (
    (re.compile(rf"docker-({_ID})\.scope"), "docker"),
    (re.compile(rf"cri-containerd-({_ID})\.scope"), "containerd"),
    (re.compile(rf"crio-({_ID})(?:\.scope)?"), "cri-o"),
    (re.compile(rf"libpod-({_ID})(?:\.scope)?"), "podman"),
)
# Pod uids are UUIDs, or 32 hex digits for static pods (the manifest's hash).
_UID = r"[0-9a-f][0-9a-f_-]{31,35}"
_POD_SLICE = re.compile(rf"kubepods(?:-burstable|-besteffort)?-pod({_UID})\.slice")
_POD_DIR = re.compile(rf"pod({_UID})")
_MACHINE = re.compile(r"machine-(.+)\.scope")
_LXC_PAYLOAD = re.compile(r"lxc\.payload\.(.+)")
_SYSTEMD_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")
# What a name may be: docker's [a-zA-Z0-9][a-zA-Z0-9_.-]+, Kubernetes' DNS-1123
# names, machine and LXC names. Anything else (spaces, escapes) is not shown.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,252}")

CONTAINERD_TASKS = "run/containerd/io.containerd.runtime.v2.task/k8s.io"
CRIO_STATE = ("run/containers/storage/overlay-containers",
              "var/lib/containers/storage/overlay-containers")
DOCKER_CONTAINERS = "var/lib/docker/containers"
PODMAN_LIST = "var/lib/containers/storage/overlay-containers/containers.json"

# (pod, namespace, uid, container name) annotations: containerd's CRI plugin
# (pkg/cri/annotations), then the kubelet's labels that cri-o, cri-dockerd and
# older containerd copy into annotations (pkg/kubelet/types/labels.go).
_ANNOTATION_SETS = (
    ("io.kubernetes.cri.sandbox-name", "io.kubernetes.cri.sandbox-namespace",
     "io.kubernetes.cri.sandbox-uid", "io.kubernetes.cri.container-name"),
    ("io.kubernetes.pod.name", "io.kubernetes.pod.namespace",
     "io.kubernetes.pod.uid", "io.kubernetes.container.name"),
)
CRIO_LABELS = "io.kubernetes.cri-o.Labels"  # the kubelet's labels as one JSON string


def safe_name(text: Any) -> str:
    """`text` if it is a plain name, else ''.

    >>> safe_name("web-7f9"), safe_name("a b"), safe_name("\\x1b[31m"), safe_name(None)
    ('web-7f9', '', '', '')
    """
    return text if isinstance(text, str) and _NAME.fullmatch(text) else ""


def _unescape(name: str) -> str:
    r"""systemd's unit-name escaping: 'foo\x2dbar' -> 'foo-bar' (systemd-escape(1))."""
    return _SYSTEMD_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def _scope(part: str) -> Optional[tuple[str, str]]:
    for pattern, runtime in _SCOPES:
        m = pattern.fullmatch(part)
        if m is not None:
            return runtime, m.group(1)
    return None


def _pod_uid(part: str, above: list[str]) -> Optional[str]:
    m = _POD_SLICE.fullmatch(part)
    if m is not None:
        return m.group(1).replace("_", "-")
    m = _POD_DIR.fullmatch(part)
    if m is not None and any(p in ("kubepods", "..") or p.startswith("kubepods.")
                             for p in above):
        return m.group(1)
    return None


def from_path(path: str) -> Optional[Container]:
    """The container whose cgroup `path` is (or is below), from its name alone.

    >>> from_path("/system.slice/docker-" + "ab" * 32 + ".scope").runtime
    'docker'
    >>> c = from_path("/kubepods/besteffort/pod0d3c6e4a-5b1f-4c2e-9a7d-3e8f1b2c4d5e/" + "cd" * 32)
    >>> c.runtime, c.pod_uid
    ('cri', '0d3c6e4a-5b1f-4c2e-9a7d-3e8f1b2c4d5e')
    >>> from_path("/machine.slice/machine-build\\\\x2d7.scope/payload").name
    'build-7'
    >>> from_path("/user.slice/user-1000.slice/session-2.scope") is None
    True
    """
    # ".." leads out of the reader's cgroup namespace (a pod's private one).
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        below = parts[i + 1] if i + 1 < len(parts) else ""
        uid = _pod_uid(part, parts[:i])
        if uid is not None:
            found = _scope(below)
            if found is None and _HEX_ID.fullmatch(below):
                found = ("cri", below)
            # No container below the pod: a process in the pod's own cgroup.
            return Container(found[0], found[1], pod_uid=uid) if found else None
        found = _scope(part)
        if found is not None:
            return Container(*found)
        if part == "docker" and _HEX_ID.fullmatch(below):
            return Container("docker", below)
        m = _MACHINE.fullmatch(part)
        if m is not None:
            name = safe_name(_unescape(m.group(1)))
            return Container("nspawn", name, name) if name else None
        m = _LXC_PAYLOAD.fullmatch(part)
        if m is not None or (part == "lxc" and below):
            name = safe_name(m.group(1) if m is not None else below)
            return Container("lxc", name, name) if name else None
    return None


def parse_cgroup(text: str) -> Optional[Container]:
    """The container of a /proc/PID/cgroup text: the v2 line first, then v1's.

    >>> parse_cgroup("12:memory:/docker/" + "ef" * 32 + "\\n0::/\\n").id[:4]
    'efef'
    """
    v2: list[str] = []
    v1: list[str] = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        (v2 if hierarchy == "0" and not controllers else v1).append(path)
    for path in v2 + v1:
        found = from_path(path)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------- the runtimes' files

def read_json(path: str, limit: int = MAX_BYTES) -> Optional[Any]:
    """A JSON file's value, or None when it is missing, not a regular file (a
    symlink, a FIFO), larger than `limit` bytes, unreadable or not JSON."""
    try:
        data = fsio.read_file(path, limit=limit, missing_ok=True)
    except HalfopenError:  # a symlink, a FIFO, too large, EACCES (not root)
        return None
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:  # also UnicodeDecodeError
        return None


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def pod_of(annotations: dict[str, str]) -> Optional[tuple[str, str, str, str]]:
    """(pod, namespace, uid, container name) from OCI annotations or kubelet labels.

    >>> pod_of({"io.kubernetes.pod.name": "web-7f9", "io.kubernetes.pod.namespace": "shop",
    ...         "io.kubernetes.container.name": "nginx"})
    ('web-7f9', 'shop', '', 'nginx')
    """
    for keys in _ANNOTATION_SETS:
        pod = safe_name(annotations.get(keys[0]))
        if pod:
            return (pod, safe_name(annotations.get(keys[1])),
                    safe_name(annotations.get(keys[2])), safe_name(annotations.get(keys[3])))
    labels = annotations.get(CRIO_LABELS)
    if labels:
        try:
            inner = _strings(json.loads(labels))
        except ValueError:
            return None
        if inner.get(_ANNOTATION_SETS[1][0]):
            return pod_of(inner)
    return None


def _with_pod(c: Container, runtime: str, annotations: dict[str, str],
              name: str = "") -> Container:
    pod = pod_of(annotations)
    if pod is None:
        return Container(runtime, c.id, name or c.name, pod_uid=c.pod_uid)
    return Container(runtime, c.id, pod[3] or name, pod[0], pod[1], pod[2] or c.pod_uid)


class Resolver:
    """Containers of processes, named from the runtime's files, read once per container."""

    def __init__(self, proc: str = "/proc", root: Optional[str] = None) -> None:
        self.proc = proc
        self.root = root if root is not None else os.environ.get(HOST_ROOT_ENV) or "/"
        self._named: dict[tuple[str, str], Container] = {}
        self._podman: Optional[dict[str, str]] = None

    def of_pid(self, pid: int) -> Optional[Container]:
        """The container `pid` runs in; None on the host or when the process is gone."""
        try:
            text = procfs.cgroup(pid, self.proc, MAX_CGROUP_BYTES)
        except OSError:  # gone, or not ours to read
            return None
        found = parse_cgroup(text)
        if found is None:
            return None
        key = (found.runtime, found.id)
        named = self._named.get(key)
        if named is None:
            named = self._named[key] = self.named(found)
        return named

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def named(self, c: Container) -> Container:
        """`c` with the names its runtime's files give; `c` itself when none are found."""
        if c.runtime in ("nspawn", "lxc"):
            return c  # the cgroup is named after the machine or container
        tries = {"containerd": (self._containerd,), "cri-o": (self._crio,),
                 "docker": (self._docker,), "podman": (self._podman_name,),
                 "cri": (self._containerd, self._crio, self._docker)}[c.runtime]
        for read in tries:
            got = read(c)
            if got is not None:
                return got
        return c

    def _containerd(self, c: Container) -> Optional[Container]:
        spec = read_json(self._path(CONTAINERD_TASKS, c.id, "config.json"))
        if not isinstance(spec, dict):
            return None
        return _with_pod(c, "containerd", _strings(spec.get("annotations")))

    def _crio(self, c: Container) -> Optional[Container]:
        for base in CRIO_STATE:
            spec = read_json(self._path(base, c.id, "userdata", "config.json"))
            if isinstance(spec, dict):
                return _with_pod(c, "cri-o", _strings(spec.get("annotations")))
        return None

    def _docker(self, c: Container) -> Optional[Container]:
        config = read_json(self._path(DOCKER_CONTAINERS, c.id, "config.v2.json"))
        if not isinstance(config, dict):
            return None
        name = config.get("Name")
        name = safe_name(name.lstrip("/")) if isinstance(name, str) else ""
        inner = config.get("Config")
        labels = _strings(inner.get("Labels")) if isinstance(inner, dict) else {}
        return _with_pod(c, "docker", labels, name)

    def _podman_name(self, c: Container) -> Optional[Container]:
        if self._podman is None:
            self._podman = {}
            listed = read_json(self._path(PODMAN_LIST), MAX_LIST_BYTES)
            for entry in listed if isinstance(listed, list) else ():
                if isinstance(entry, dict) and isinstance(entry.get("names"), list):
                    names = [n for n in entry["names"] if safe_name(n)]
                    if names and isinstance(entry.get("id"), str):
                        self._podman[entry["id"]] = names[0]
        name = self._podman.get(c.id)
        return Container("podman", c.id, name) if name else None
