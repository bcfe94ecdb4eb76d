"""The container a process runs in, as its cgroup path and its runtime's files name it.

    Container("containerd", "8c3f...", name="nginx", pod="web-7f9", pod_namespace="shop")
    Container("docker", "3f4e1b2c9a0d...", name="redis")
    Container("nspawn", "debian", name="debian")

`runtime` is one of RUNTIMES; "cri" is a Kubernetes container whose cgroup
(cgroupfs driver: /kubepods/burstable/pod<uid>/<id>) does not say which
runtime runs it and whose runtime files were not found. Names are empty
when the runtime's files could not be read.
"""

from __future__ import annotations

import re
from typing import Any

from halfopen.records import record

RUNTIMES = ("docker", "containerd", "cri-o", "podman", "nspawn", "lxc", "cri")
SHORT_ID = 12  # docker ps, crictl ps: the first 12 hex digits
MIN_ID_PREFIX = 4  # a shorter prefix of a 64-hex id matches too much to act on
_HEX_ID = re.compile(r"[0-9a-f]{64}")


@record(frozen=True)
class Container:
    runtime: str
    id: str  # 64 hex digits (docker, containerd, cri-o, podman); the name (nspawn, lxc)
    name: str = ""  # the container's name; in Kubernetes the container's name in its pod
    pod: str = ""
    pod_namespace: str = ""
    pod_uid: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID]

    @property
    def pod_ref(self) -> str:
        """'shop/web-7f9' (kubectl's namespace/name), or '' outside a pod."""
        return f"{self.pod_namespace}/{self.pod}" if self.pod else ""

    def phrase(self) -> str:
        """How a finding's title names it: 'pod shop/web-7f9', 'docker redis'."""
        if self.pod:
            return f"pod {self.pod_ref}"
        return f"{self.runtime} {self.name or self.short_id}"

    def text(self) -> str:
        """The `sockets -p` column: 'shop/web-7f9/nginx', 'docker:redis'."""
        if self.pod:
            return self.pod_ref + (f"/{self.name}" if self.name else "")
        return f"{self.runtime}:{self.name or self.short_id}"

    def matches(self, word: str) -> bool:
        """The `container WORD` filter: name, pod, namespace/pod, id or an id prefix.

        >>> c = Container("containerd", "8c3f" + "0" * 60, "nginx", "web-7f9", "shop")
        >>> [c.matches(w) for w in ("nginx", "web-7f9", "shop/web-7f9", "8c3f", "8c3", "shop")]
        [True, True, True, True, False, False]
        """
        if not word:
            return False
        if word in (self.name, self.pod, self.id) or (self.pod and word == self.pod_ref):
            return True
        return (len(word) >= MIN_ID_PREFIX and _HEX_ID.fullmatch(self.id) is not None
                and self.id.startswith(word.lower()))

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "id": self.id, "name": self.name, "pod": self.pod,
                "pod_namespace": self.pod_namespace, "pod_uid": self.pod_uid}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Container:
        return cls(runtime=d["runtime"], id=d["id"], name=d.get("name", ""),
                   pod=d.get("pod", ""), pod_namespace=d.get("pod_namespace", ""),
                   pod_uid=d.get("pod_uid", ""))
