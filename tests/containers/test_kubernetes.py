"""deploy/kubernetes/: the manifests are valid against the Kubernetes schemas
(kubernetes-validate's bundled ones) and the prometheus-operator CRDs' own
(@kubernetes-models/prometheus-operator, run by node), a broken manifest
fails that validation, and the DaemonSet asks for what halfopen needs and
no more. Both validators come from `scripts/install-deps --test`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from halfopen.collect import containers

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
NODE_MODULES = Path(os.environ.get("HALFOPEN_K8S_MODELS", ROOT / ".cache" / "k8s-models")) \
    / "node_modules"
# appArmorProfile is a field from 1.30 on; the latest the validator bundles too
VERSIONS = ("1.30.0", "latest")
CAPABILITIES = ["DAC_READ_SEARCH", "SYSLOG", "SYS_ADMIN", "SYS_PTRACE"]

kv = pytest.importorskip("kubernetes_validate",
                         reason="kubernetes-validate: scripts/install-deps --test")
yaml = pytest.importorskip("yaml")


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def core() -> list[dict]:
    return [d for name in ("namespace.yaml", "daemonset.yaml", "service.yaml")
            for d in load(KUBE / name)]


def monitors() -> list[dict]:
    return [d for p in sorted((KUBE / "monitoring").glob("*.yaml")) for d in load(p)]


def by_kind(kind: str) -> dict:
    (found,) = [d for d in core() + monitors() if d["kind"] == kind]
    return found


def validate_core(resource: dict, version: str) -> None:
    v = kv.latest_version() if version == "latest" else version
    kv.validate(resource, v, strict=True)  # strict: an unknown field is an error too


def validate_crds(resources: list[dict]) -> subprocess.CompletedProcess:
    if shutil.which("node") is None or not (NODE_MODULES / "@kubernetes-models").is_dir():
        pytest.skip(f"node and @kubernetes-models in {NODE_MODULES}: "
                    "scripts/install-deps --test")
    return subprocess.run(["node", str(HERE / "validate_crds.mjs"), str(NODE_MODULES)],
                          input=json.dumps(resources), capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("version", VERSIONS)
def test_core_manifests_are_valid(version):
    kinds = [d["kind"] for d in core()]
    assert sorted(kinds) == ["DaemonSet", "Namespace", "Service", "ServiceAccount"]
    for resource in core():
        validate_core(resource, version)


BROKEN = [
    ("a string where a bool goes", lambda d: d["spec"]["template"]["spec"].update(hostPID="yes")),
    ("a misspelt field", lambda d: d["spec"]["template"]["spec"].update(hostPid=True)),
    ("capabilities not a list", lambda d: d["spec"]["template"]["spec"]["containers"][0]
     ["securityContext"]["capabilities"].update(add="SYS_PTRACE")),
    ("no selector", lambda d: d["spec"].pop("selector")),
    ("a port as a string", lambda d: d["spec"]["template"]["spec"]["containers"][0]
     ["ports"][0].update(containerPort="9469")),
]


@pytest.mark.parametrize("what,breaks", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_daemonset_fails(what, breaks):
    broken = copy.deepcopy(by_kind("DaemonSet"))
    breaks(broken)
    with pytest.raises(kv.ValidationError):
        validate_core(broken, "latest")


def test_monitors_are_valid_against_their_crds():
    found = monitors()
    assert sorted(d["kind"] for d in found) == ["PodMonitor", "ServiceMonitor"]
    r = validate_crds(found)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(": valid") == 2


def test_a_broken_monitor_fails():
    sm = copy.deepcopy(by_kind("ServiceMonitor"))
    sm["spec"]["endpoints"][0]["interval"] = "every 30 seconds"
    pm = copy.deepcopy(by_kind("PodMonitor"))
    del pm["spec"]["selector"]
    r = validate_crds([sm, pm])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "interval must match pattern" in r.stdout and "required property selector" in r.stdout


def pod_spec() -> dict:
    return by_kind("DaemonSet")["spec"]["template"]["spec"]


def test_daemonset_asks_for_what_it_needs_and_no_more():
    spec = pod_spec()
    assert spec["hostPID"] is True and spec["hostNetwork"] is True
    assert spec["automountServiceAccountToken"] is False  # no API server needed
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sorted(sc["capabilities"]["add"]) == CAPABILITIES
    assert c["resources"]["limits"]["memory"] == "512Mi"  # BENCHMARKS.md: 1M sockets
    assert "--all-netns" in c["args"]  # the one reason for SYS_ADMIN: setns into pods
    for mount in c["volumeMounts"]:
        assert mount["readOnly"] is True


def test_runtime_files_are_mounted_where_halfopen_reads_them():
    spec = pod_spec()
    (c,) = spec["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    root = env[containers.HOST_ROOT_ENV]
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    mounted = {}
    for m in c["volumeMounts"]:
        assert m["mountPath"] == root + volumes[m["name"]]  # the node's path under the root
        mounted[volumes[m["name"]]] = m["mountPath"]
    read = ["/" + containers.CONTAINERD_TASKS, "/" + containers.DOCKER_CONTAINERS,
            *("/" + p for p in containers.CRIO_STATE)]
    assert sorted(mounted) == sorted(read)
    assert not any(p.endswith(".sock") or p in ("/", "/run", "/var/lib") for p in mounted)


def test_labels_and_ports_line_up():
    pod_labels = by_kind("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    svc = by_kind("Service")
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (port,) = svc["spec"]["ports"]
    (c,) = pod_spec()["containers"]
    assert port["targetPort"] == c["ports"][0]["name"] == "metrics"
    assert c["ports"][0]["containerPort"] == port["port"]
    sm, pm = by_kind("ServiceMonitor"), by_kind("PodMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert sm["spec"]["endpoints"][0]["port"] == pm["spec"]["podMetricsEndpoints"][0]["port"] \
        == "metrics"
    namespace = by_kind("Namespace")["metadata"]["name"]
    for d in core()[1:] + monitors():
        assert d["metadata"]["namespace"] == namespace


def test_daemonset_args_are_a_valid_exporter_command():
    from halfopen.cli.exporter_cmd import exporter
    (c,) = pod_spec()["containers"]
    assert c["args"][0] == "exporter"
    ctx = exporter.make_context("exporter", list(c["args"][1:]))
    assert ctx.params["all_netns"] is True and ctx.params["listen"].endswith(":9469")


def test_containerfile_installs_the_wheel():
    text = (KUBE / "Containerfile").read_text()
    assert re.search(r"^FROM \S+python:3\.\d+", text, re.M)
    assert re.search(r"^COPY dist/halfopen-\*\.whl ", text, re.M)
    assert re.search(r"pip install .*/halfopen-\*\.whl", text)
    assert re.search(r'^ENTRYPOINT \["halfopen"\]$', text, re.M)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    (c,) = pod_spec()["containers"]
    assert cmd == c["args"]
