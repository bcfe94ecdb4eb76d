"""Who a process is, in terms that survive its restart: comm, systemd unit, container, pod.

A pid is new after every restart (and is reused by unrelated processes), so
a metric series keyed by pid ends at each restart and a new one begins:
alerts resolve and fire anew, graphs break. The exporter keys per-process
series by an Identity instead and puts the pid in a separate info series.
Processes that share an identity (nginx's workers, a pool of php-fpm
children) share its series.

The container fields stay empty until the owner process carries its
container (cgroup attribution); their label names are prefixed because
Kubernetes service discovery already sets `container`, `pod` and
`namespace` on the exporter's own target, and Prometheus would rename ours
to `exported_*`.
"""

from __future__ import annotations

from halfopen.records import record

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


def of(comm: str, unit: str = "", container: object = None) -> Identity:
    """An Identity from a comm, a unit and (when known) a model Container record."""
    if container is None:
        return Identity(comm, unit)
    return Identity(comm, unit, getattr(container, "name", "") or getattr(container, "short_id", ""),
                    getattr(container, "pod", ""), getattr(container, "pod_namespace", ""))
