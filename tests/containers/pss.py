"""The Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards,
v1.30), as a test can apply them offline to a pod spec: each control of the "baseline"
and "restricted" profiles is a function that returns why a pod breaks it, or "".

No checker runs without a cluster (Pod Security admission is in the API server), so
the controls are written out here from the page's tables, in its order and with its
names. The pod is checked as the API server would see it after defaulting: with
hostNetwork, a containerPort's hostPort defaults to the containerPort (pkg/apis/core/
v1/defaults.go, SetDefaults_Pod), which the "Host Ports" control then sees.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                         "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
                         "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def defaulted(pod_spec: dict) -> dict:
    """The pod spec as admission sees it: hostPort = containerPort under hostNetwork."""
    spec = copy.deepcopy(pod_spec)
    if spec.get("hostNetwork"):
        for c in containers(spec):
            for port in c.get("ports", ()):
                port.setdefault("hostPort", port["containerPort"])
    return spec


def containers(spec: dict) -> Iterator[dict]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key, ())


def _sc(c: dict) -> dict:
    return c.get("securityContext") or {}


# -- baseline ---------------------------------------------------------------------------

def host_process(spec: dict) -> str:
    scs = [spec.get("securityContext") or {}, *map(_sc, containers(spec))]
    return "hostProcess" if any((s.get("windowsOptions") or {}).get("hostProcess") for s in scs) else ""


def host_namespaces(spec: dict) -> str:
    return ", ".join(k for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k))


def privileged(spec: dict) -> str:
    return ", ".join(c["name"] for c in containers(spec) if _sc(c).get("privileged"))


def capabilities_baseline(spec: dict) -> str:
    extra = {cap for c in containers(spec)
             for cap in (_sc(c).get("capabilities") or {}).get("add", ())} - BASELINE_CAPABILITIES
    return ", ".join(sorted(extra))


def host_path(spec: dict) -> str:
    return ", ".join(v["hostPath"]["path"] for v in spec.get("volumes", ()) if "hostPath" in v)


def host_ports(spec: dict) -> str:
    return ", ".join(str(p["hostPort"]) for c in containers(spec) for p in c.get("ports", ())
                     if p.get("hostPort"))


def apparmor(spec: dict, annotations: dict) -> str:
    profiles = [(spec.get("securityContext") or {}).get("appArmorProfile"),
                *(_sc(c).get("appArmorProfile") for c in containers(spec))]
    bad = [p["type"] for p in profiles if p and p.get("type") not in ("RuntimeDefault", "Localhost")]
    bad += [v for k, v in annotations.items()
            if k.startswith("container.apparmor.security.beta.kubernetes.io/")
            and v != "runtime/default" and not v.startswith("localhost/")]
    return ", ".join(bad)


def selinux(spec: dict) -> str:
    opts = [(spec.get("securityContext") or {}).get("seLinuxOptions"),
            *(_sc(c).get("seLinuxOptions") for c in containers(spec))]
    bad = [o for o in opts if o and (o.get("type", "") not in SELINUX_TYPES
                                     or o.get("user") or o.get("role"))]
    return str(bad) if bad else ""


def proc_mount(spec: dict) -> str:
    return ", ".join(c["name"] for c in containers(spec)
                     if _sc(c).get("procMount", "Default") != "Default")


def seccomp_baseline(spec: dict) -> str:
    types = [((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type"),
             *((_sc(c).get("seccompProfile") or {}).get("type") for c in containers(spec))]
    return "Unconfined" if "Unconfined" in types else ""


def sysctls(spec: dict) -> str:
    names = {s["name"] for s in (spec.get("securityContext") or {}).get("sysctls", ())}
    return ", ".join(sorted(names - SAFE_SYSCTLS))


# -- restricted, beyond baseline -----------------------------------------------------------

def volume_types(spec: dict) -> str:
    kinds = {k for v in spec.get("volumes", ()) for k in v if k != "name"}
    return ", ".join(sorted(kinds - RESTRICTED_VOLUMES))


def privilege_escalation(spec: dict) -> str:
    return ", ".join(c["name"] for c in containers(spec)
                     if _sc(c).get("allowPrivilegeEscalation") is not False)


def _effective(spec: dict, c: dict, key: str):
    own = _sc(c).get(key)
    return own if own is not None else (spec.get("securityContext") or {}).get(key)


def non_root(spec: dict) -> str:
    return ", ".join(c["name"] for c in containers(spec) if _effective(spec, c, "runAsNonRoot") is not True)


def non_root_user(spec: dict) -> str:
    return ", ".join(c["name"] for c in containers(spec) if _effective(spec, c, "runAsUser") == 0)


def seccomp_restricted(spec: dict) -> str:
    bad = [c["name"] for c in containers(spec)
           if ((_effective(spec, c, "seccompProfile") or {}).get("type")
               not in ("RuntimeDefault", "Localhost"))]
    return ", ".join(bad)


def capabilities_restricted(spec: dict) -> str:
    bad = []
    for c in containers(spec):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in caps.get("drop", ()) or set(caps.get("add", ())) - {"NET_BIND_SERVICE"}:
            bad.append(c["name"])
    return ", ".join(bad)


Check = Callable[[dict], str]
BASELINE: dict[str, Check] = {
    "HostProcess": host_process,
    "Host Namespaces": host_namespaces,
    "Privileged Containers": privileged,
    "Capabilities": capabilities_baseline,
    "HostPath Volumes": host_path,
    "Host Ports": host_ports,
    "SELinux": selinux,
    "/proc Mount Type": proc_mount,
    "Seccomp": seccomp_baseline,
    "Sysctls": sysctls,
}
RESTRICTED: dict[str, Check] = {
    "Volume Types": volume_types,
    "Privilege Escalation": privilege_escalation,
    "Running as Non-root": non_root,
    "Running as Non-root user": non_root_user,
    "Seccomp": seccomp_restricted,
    "Capabilities": capabilities_restricted,
}


def broken(template: dict, profile: str) -> dict[tuple[str, str], str]:
    """{(profile, control): why} for every control that a pod template ({metadata,
    spec}) breaks: baseline's, and with profile "restricted" also restricted's own
    (restricted includes baseline; a control both profiles name, such as
    Capabilities, appears once for each, with each profile's rule)."""
    spec = defaulted(template["spec"])
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    out = {("baseline", name): why for name, check in BASELINE.items() if (why := check(spec))}
    if why := apparmor(spec, annotations):
        out["baseline", "AppArmor"] = why
    if profile == "restricted":
        out.update({("restricted", name): why for name, check in RESTRICTED.items()
                    if (why := check(spec))})
    return out
