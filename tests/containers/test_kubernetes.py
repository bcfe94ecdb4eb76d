"""deploy/kubernetes/: what `kubectl kustomize` builds from it (the default base/,
overlays/all-namespaces/, and every component at once) is valid against the
Kubernetes schemas (kubernetes-validate's bundled ones), the ServiceMonitor and
PodMonitor against the prometheus-operator CRDs' own (@kubernetes-models/
prometheus-operator, run by node), a broken manifest fails that validation; the
DaemonSet asks for what halfopen needs and no more, and breaks exactly the Pod
Security Standards controls docs/deploy.md lists with their reasons (pss.py).
Both validators come from `scripts/install-deps --test`; kustomize is kubectl's.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest

from halfopen.collect import containers

from . import pss

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
NODE_MODULES = Path(os.environ.get("HALFOPEN_K8S_MODELS", ROOT / ".cache" / "k8s-models")) \
    / "node_modules"
# appArmorProfile is a field from 1.30 on; the latest the validator bundles too
VERSIONS = ("1.30.0", "latest")
BASE_CAPABILITIES = ["DAC_READ_SEARCH", "SYSLOG", "SYS_PTRACE"]
RUNTIMES = ("containerd", "cri-o", "docker")
# variant -> the components it is built with (base/ plus these)
VARIANTS = {
    "base": (),
    "all-namespaces": ("all-netns", "containerd"),
    "everything": ("all-netns", *RUNTIMES, "host-processes"),
}

kv = pytest.importorskip("kubernetes_validate",
                         reason="kubernetes-validate: scripts/install-deps --test")
yaml = pytest.importorskip("yaml")


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomize(where: Path) -> str:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (kustomize) not installed")
    r = subprocess.run(["kubectl", "kustomize", str(where)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@cache
def _built(variant: str) -> str:
    if variant == "base":  # the top kustomization: what `kubectl apply -k deploy/kubernetes/` applies
        return kustomize(KUBE)
    if variant == "all-namespaces":
        return kustomize(KUBE / "overlays" / "all-namespaces")
    with tempfile.TemporaryDirectory(prefix="halfopen-kustomize-") as tmp:
        where = Path(tmp)

        def rel(p: Path) -> str:  # kustomize refuses an absolute root
            return os.path.relpath(p, where)

        (where / "kustomization.yaml").write_text(
            f"resources:\n  - {rel(KUBE / 'base')}\ncomponents:\n"
            + "".join(f"  - {rel(KUBE / 'components' / c)}\n" for c in VARIANTS[variant]))
        return kustomize(where)


def core(variant: str = "base") -> list[dict]:
    return [d for d in yaml.safe_load_all(_built(variant)) if d]


def monitors() -> list[dict]:
    return [d for p in sorted((KUBE / "monitoring").glob("*.yaml")) for d in load(p)]


def by_kind(kind: str, variant: str = "base") -> dict:
    (found,) = [d for d in core(variant) + monitors() if d["kind"] == kind]
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


def test_kustomize_applies_the_namespace_first():
    kinds = [d["kind"] for d in core()]
    assert kinds == ["Namespace", "ServiceAccount", "Service", "DaemonSet"]
    # the overlays apply the same objects, the DaemonSet patched
    for variant in VARIANTS:
        assert [d["kind"] for d in core(variant)] == kinds


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", VERSIONS)
def test_core_manifests_are_valid(version, variant):
    for resource in core(variant):
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


def pod_template(variant: str = "base") -> dict:
    return by_kind("DaemonSet", variant)["spec"]["template"]


def pod_spec(variant: str = "base") -> dict:
    return pod_template(variant)["spec"]


def test_daemonset_asks_for_what_it_needs_and_no_more():
    spec = pod_spec()
    assert spec["hostPID"] is True and spec["hostNetwork"] is True
    assert spec["automountServiceAccountToken"] is False  # no API server needed
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    # prometheus-node-exporter's chart: NoSchedule taints only, a NoExecute one still evicts
    assert spec["tolerations"] == [{"operator": "Exists", "effect": "NoSchedule"}]
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["appArmorProfile"] == {"type": "RuntimeDefault"}
    assert "volumes" not in spec  # no hostPath without a runtime component
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sorted(sc["capabilities"]["add"]) == BASE_CAPABILITIES
    assert "--all-netns" not in c["args"]  # the node's namespace: hostNetwork, no setns
    assert c["resources"]["limits"]["memory"] == "512Mi"  # BENCHMARKS.md: 1M sockets
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/", "port": "metrics"}  # a constant 200


def test_all_netns_adds_setns_and_nothing_else():
    base, wide = pod_spec(), pod_spec("all-namespaces")
    (b,), (w,) = base["containers"], wide["containers"]
    assert w["args"] == [*b["args"], "--all-netns"]
    assert sorted(w["securityContext"]["capabilities"]["add"]) == sorted([*BASE_CAPABILITIES, "SYS_ADMIN"])
    assert wide["securityContext"] == base["securityContext"]  # AppArmor stays RuntimeDefault
    everything = pod_spec("everything")
    assert everything["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}


def test_runtime_files_are_mounted_where_halfopen_reads_them():
    spec = pod_spec("everything")
    (c,) = spec["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    root = env[containers.HOST_ROOT_ENV]
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
    mounted = {}
    for m in c["volumeMounts"]:
        assert m["readOnly"] is True
        assert m["mountPath"] == root + volumes[m["name"]]["path"]  # the node's path under the root
        mounted[volumes[m["name"]]["path"]] = m["mountPath"]
    # Directory: a node without that runtime gets no directory made for it
    assert {v["type"] for v in volumes.values()} == {"Directory"}
    read = ["/" + containers.CONTAINERD_TASKS, "/" + containers.DOCKER_CONTAINERS,
            *("/" + p for p in containers.CRIO_STATE)]
    assert sorted(mounted) == sorted(read)
    assert not any(p.endswith(".sock") or p in ("/", "/run", "/var/lib") for p in mounted)
    # each runtime component mounts only its own runtime's files
    for runtime in RUNTIMES:
        text = (KUBE / "components" / runtime / "kustomization.yaml").read_text()
        assert len(re.findall(r"^ +path: ", text, re.M)) == (2 if runtime == "cri-o" else 1)


def documented_exceptions() -> list[tuple[str, str, set[str]]]:
    """(profile, control, what breaks it) from docs/deploy.md's table of exceptions:
    'base' or the components that bring it."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    table = text[text.index("| profile | control | broken by | why |"):].split("\n\n")[0]
    rows = []
    for line in table.splitlines()[2:]:
        profile, control, by, why = (cell.strip() for cell in line.strip("|").split("|"))
        assert why, control
        rows.append((profile, control, {w.strip().strip("`") for w in by.split(",")}))
    return rows


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_security_exceptions_are_the_documented_ones(variant):
    documented = {(profile, control) for profile, control, by in documented_exceptions()
                  if "base" in by or by & set(VARIANTS[variant])}
    assert set(pss.broken(pod_template(variant), "restricted")) == documented


def test_the_default_breaks_baseline_as_little_as_node_exporter():
    """Measured: the default breaks 3 baseline controls (prometheus-node-exporter's chart:
    Host Namespaces, HostPath Volumes, Host Ports); the DaemonSet before issue 24, which
    every component together rebuilds, broke 5."""
    assert sorted(c for _p, c in pss.broken(pod_template(), "baseline")) == \
        ["Capabilities", "Host Namespaces", "Host Ports"]
    assert len(pss.broken(pod_template("all-namespaces"), "baseline")) == 4
    assert sorted(c for _p, c in pss.broken(pod_template("everything"), "baseline")) == \
        ["AppArmor", "Capabilities", "Host Namespaces", "Host Ports", "HostPath Volumes"]


def test_the_pod_security_checks_can_fail_and_pass():
    bad = {"metadata": {"annotations": {
        "container.apparmor.security.beta.kubernetes.io/c": "unconfined"}},
        "spec": {"hostIPC": True, "securityContext": {
            "sysctls": [{"name": "kernel.msgmax", "value": "1"}],
            "seccompProfile": {"type": "Unconfined"},
            "seLinuxOptions": {"type": "spc_t"}},
            "volumes": [{"name": "v", "hostPath": {"path": "/etc"}}],
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}],
                            "securityContext": {"privileged": True, "procMount": "Unmasked",
                                                "windowsOptions": {"hostProcess": True},
                                                "capabilities": {"add": ["NET_RAW"]}}}]}}
    assert {c for p, c in pss.broken(bad, "baseline")} == {
        "HostProcess", "Host Namespaces", "Privileged Containers", "Capabilities",
        "HostPath Volumes", "Host Ports", "AppArmor", "SELinux", "/proc Mount Type", "Seccomp",
        "Sysctls"}
    good = {"spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "volumes": [{"name": "t", "emptyDir": {}}],
                     "containers": [{"name": "c", "ports": [{"containerPort": 80}],
                                     "securityContext": {
                                         "allowPrivilegeEscalation": False,
                                         "capabilities": {"drop": ["ALL"],
                                                          "add": ["NET_BIND_SERVICE"]}}}]}}
    assert pss.broken(good, "restricted") == {}
    # hostNetwork alone: hostPort defaults to the containerPort, and the check sees it
    assert set(pss.broken({"spec": {**good["spec"], "hostNetwork": True}}, "baseline")) == \
        {("baseline", "Host Namespaces"), ("baseline", "Host Ports")}


def test_labels_and_ports_line_up():
    pod_labels = pod_template()["metadata"]["labels"]
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


@pytest.mark.parametrize("variant", VARIANTS)
def test_daemonset_args_are_a_valid_exporter_command(variant):
    from halfopen.cli.exporter_cmd import exporter
    (c,) = pod_spec(variant)["containers"]
    assert c["args"][0] == "exporter"
    ctx = exporter.make_context("exporter", list(c["args"][1:]))
    assert ctx.params["all_netns"] is (variant != "base") and ctx.params["listen"].endswith(":9469")


def test_containerfile_installs_the_wheel():
    text = (KUBE / "Containerfile").read_text()
    assert re.search(r"^FROM \S+python:3\.\d+", text, re.M)
    assert re.search(r"^COPY dist/halfopen-\*\.whl ", text, re.M)
    assert re.search(r"pip install .*/halfopen-\*\.whl", text)
    assert re.search(r'^ENTRYPOINT \["halfopen"\]$', text, re.M)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    (c,) = pod_spec()["containers"]
    assert cmd == c["args"]
