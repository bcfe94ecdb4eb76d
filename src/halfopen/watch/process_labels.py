"""Who a process is, in terms that survive its restart: comm, systemd unit, container, pod.

A pid is new after every restart (and is reused by unrelated processes), so
a metric series keyed by pid ends at each restart and a new one begins:
alerts resolve and fire anew, graphs break. The exporter keys per-process
series by an Identity instead and puts the pid in a separate info series.
Processes that share an identity (nginx's workers, a pool of php-fpm
children) share its series.

The container fields come from the owner's container (collect.containers:
its cgroup and the runtime's files): a container's name and its pod's name
and namespace survive the container's restart, its id does not. Their label
names are prefixed because Kubernetes service discovery already sets
`container`, `pod` and `namespace` on the exporter's own target, and
Prometheus would rename ours to `exported_*`.
"""

from __future__ import annotations

from typing import Optional

from halfopen.records import record

from ..model.container import Container

OTHER = "other"
LABELS = ("comm", "unit", "container_name", "pod_name", "pod_namespace")


@record(frozen=True)
class Identity:
    comm: str
    unit: str = ""  # systemd service from /proc/PID/cgroup, "" outside one
    container_name: str = ""
    pod_name: str = ""
    pod_namespace: str = ""

    def labels(self) -> list[str]:
        """Label values in LABELS order."""
        return [self.comm, self.unit, self.container_name, self.pod_name, self.pod_namespace]


OTHER_IDENTITY = Identity(OTHER)


def of(comm: str, unit: str = "", container: Optional[Container] = None) -> Identity:
    """An Identity from a comm, a unit and the container when known (unnamed: its short id).

    >>> of("nginx", "", Container("containerd", "8c3f" + "0" * 60, "nginx", "web-7f9", "shop"))
    Identity(comm='nginx', unit='', container_name='nginx', pod_name='web-7f9', pod_namespace='shop')
    >>> of("redis", "", Container("docker", "3f4e1b2c9a0d" + "0" * 52)).container_name
    '3f4e1b2c9a0d'
    """
    if container is None:
        return Identity(comm, unit)
    return Identity(comm, unit, container.name or container.short_id, container.pod,
                    container.pod_namespace)
