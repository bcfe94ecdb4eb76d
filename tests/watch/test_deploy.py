"""The fleet kit in deploy/: alert rules checked and unit-tested by promtool
(the exporter-down rule against every shipped scrape config's job label),
every metric used there exists in docs/metrics.md, units point at halfopen,
score at most 3.0 in systemd-analyze security, and their user and
capabilities see what root sees."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import nobody_cannot_run_halfopen, run_halfopen

from halfopen.model.rules import RULE_IDS

from .conftest import ROOT

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "halfopen-alerts.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_promtool_check_rules():
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_test_rules():
    tests = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
    assert tests
    r = promtool("test", "rules", *map(str, tests))
    assert r.returncode == 0, r.stdout + r.stderr


def shipped_jobs() -> dict[str, str]:
    """The job label each shipped scrape config gives the exporter's series: the static
    config in docs/metrics.md, a ServiceMonitor's (the Service's name, prometheus-operator's
    default without jobLabel) and a PodMonitor's (namespace/name)."""
    import yaml

    docs = (ROOT / "docs" / "metrics.md").read_text()
    (static,) = re.findall(r"^  - job_name: (\S+)$", docs, re.M)
    mon = DEPLOY / "kubernetes" / "monitoring"
    sm = yaml.safe_load((mon / "servicemonitor.yaml").read_text())
    pm = yaml.safe_load((mon / "podmonitor.yaml").read_text())
    (svc,) = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "base" / "service.yaml").read_text())
              if d and d["kind"] == "Service"]
    assert "jobLabel" not in sm["spec"] and "jobLabel" not in pm["spec"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    return {"static": static, "ServiceMonitor": svc["metadata"]["name"],
            "PodMonitor": f'{pm["metadata"]["namespace"]}/{pm["metadata"]["name"]}'}


def test_exporter_down_selects_the_job_of_every_shipped_scrape_config():
    import yaml

    rules = {r["alert"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"]
             for r in g["rules"]}
    jobs = shipped_jobs()
    assert jobs == {"static": "halfopen", "ServiceMonitor": "halfopen-exporter",
                    "PodMonitor": "halfopen/halfopen-exporter"}
    for name in ("HalfopenExporterDown", "HalfopenExporterAbsent"):
        (regex,) = re.findall(r'up\{job=~"([^"]+)"\}', rules[name])
        for job in jobs.values():  # Prometheus anchors its regexes
            assert re.fullmatch(regex, job), (name, job)
        assert not re.fullmatch(regex, "node-exporter")
    # the promtool cases use exactly these job labels
    health = (DEPLOY / "prometheus" / "tests" / "exporter-health-test.yml").read_text()
    for job in jobs.values():
        assert f'up{{job="{job}",' in health


def test_an_alert_for_every_finding_kind():
    text = RULES.read_text()
    for rid in RULE_IDS:
        assert f'halfopen_finding{{id="{rid}"' in text, rid


def documented_metrics() -> set[str]:
    return set(re.findall(r"`(halfopen_[a-z_]+)`", (ROOT / "docs" / "metrics.md").read_text()))


def test_rules_and_dashboard_use_documented_metrics():
    known = documented_metrics()
    dash = json.loads((DEPLOY / "grafana" / "halfopen-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = set()
    for text in [RULES.read_text(), *exprs]:
        used |= set(re.findall(r"\b(halfopen_[a-z_]+)", text))
    assert used - known == set()


def test_systemd_units_run_halfopen():
    exporter = (DEPLOY / "systemd" / "halfopen-exporter.service").read_text()
    watch = (DEPLOY / "systemd" / "halfopen-watch.service").read_text()
    # where `make doctor` installs it: a venv in /opt/halfopen; the arguments from
    # /etc/default/halfopen when it exists (Debian's node-exporter way), else the unit's
    for unit, var in ((exporter, "EXPORTER_ARGS"), (watch, "WATCH_ARGS")):
        assert re.search(rf"^ExecStart=/opt/halfopen/bin/halfopen \w+ \${var}$", unit, re.M)
        assert re.search(r"^EnvironmentFile=-/etc/default/halfopen$", unit, re.M)
        assert re.search(r"^Documentation=man:halfopen\(8\) https://\S+/docs/deploy\.md$", unit, re.M)
        assert "[Install]" in unit and "WantedBy=multi-user.target" in unit
        assert re.search(r"^MemoryMax=512M$", unit, re.M)  # BENCHMARKS.md: 1M sockets
    assert default_args(exporter, "EXPORTER_ARGS") == ["--listen", "127.0.0.1:9469"]
    args = default_args(watch, "WATCH_ARGS")
    assert args[args.index("--record") + 1].startswith("/var/lib/halfopen/")
    # the example /etc/default/halfopen sets the same variables, commented out
    example = (DEPLOY / "systemd" / "halfopen.default").read_text()
    assert re.search(r'^#EXPORTER_ARGS="--listen 127\.0\.0\.1:9469', example, re.M)
    assert re.search(r'^#WATCH_ARGS="', example, re.M)


def default_args(unit: str, var: str) -> list[str]:
    (value,) = re.findall(rf'^Environment="{var}=([^"]*)"$', unit, re.M)
    return value.split()  # systemd splits an unquoted $VAR at whitespace


def test_unit_default_arguments_are_valid_commands():
    from halfopen.cli.exporter_cmd import exporter
    from halfopen.cli.watch_cmd import watch

    for unit, var, command in (("halfopen-exporter.service", "EXPORTER_ARGS", exporter),
                               ("halfopen-watch.service", "WATCH_ARGS", watch)):
        args = default_args((DEPLOY / "systemd" / unit).read_text(), var)
        command.make_context(command.name, list(args))  # raises on a bad option


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    """`systemd-analyze verify` with the man page where man finds it: it runs `man
    halfopen(8)` for Documentation= and checks ExecStart is executable, so /opt/halfopen
    stands in as a tmp copy of the same command path; without the page it fails."""
    if shutil.which("systemd-analyze") is None or shutil.which("man") is None:
        pytest.skip("systemd-analyze or man not installed")
    (tmp_path / "man" / "man8").mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "halfopen.8", tmp_path / "man" / "man8" / "halfopen.8")
    command = tmp_path / "halfopen"
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    units = []
    for name, path in shipped_units(tmp_path).items():
        unit = tmp_path / "verify" / name.replace("/", "-").replace(".conf", ".service")
        unit.parent.mkdir(exist_ok=True)
        unit.write_text(Path(path).read_text().replace("/opt/halfopen/bin/halfopen", str(command)))
        units.append(str(unit))
    env = {**os.environ, "MANPATH": str(tmp_path / "man")}
    r = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    env["MANPATH"] = str(tmp_path / "nowhere")
    r = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode != 0 and "man halfopen(8)" in r.stderr


def test_every_exported_metric_is_documented():
    from prometheus_client import CollectorRegistry, generate_latest

    from halfopen.watch.serving import exporter

    from .samples import finding, make

    class Fixed:
        def collect(self):
            return exporter.families(make(1.0, close_wait=3, findings=[finding()]), top=5)

    reg = CollectorRegistry()
    reg.register(Fixed())
    text = generate_latest(reg).decode()
    exported = {re.split(r"[{ ]", line)[0] for line in text.splitlines() if line[:1] != "#"}
    exported.add("halfopen_scrape_duration_seconds")
    assert exported - documented_metrics() == set()


# ---------------------------------------------------------------- least privilege

SYSTEMD = DEPLOY / "systemd"
MAX_EXPOSURE = 3.0
UNITS = ("halfopen-exporter.service", "halfopen-watch.service")
DROP_INS = {"all-netns.conf": "halfopen-exporter.service"}
NOBODY = 65534


def shipped_units(tmp_path) -> dict[str, str]:
    """name -> path of every unit as systemd would load it: each unit, and each
    drop-in merged into its unit (a drop-in's lines apply after the unit's)."""
    found = {u: str(SYSTEMD / u) for u in UNITS}
    for drop_in, unit in DROP_INS.items():
        merged = tmp_path / f"{drop_in[:-5]}-{unit}"
        merged.write_text((SYSTEMD / unit).read_text()
                          + (SYSTEMD / f"{unit}.d" / drop_in).read_text())
        found[f"{unit}.d/{drop_in}"] = str(merged)
    assert sorted(p.name for p in SYSTEMD.glob("*.service")) == sorted(UNITS)
    assert sorted(p.name for p in SYSTEMD.glob("*.d/*.conf")) == sorted(DROP_INS)
    return found


def exposure(path: str) -> float:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", path],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m is not None, r.stdout[-500:] + r.stderr
    return float(m.group(1))


def test_every_unit_scores_at_most_3(tmp_path):
    scores = {name: exposure(path) for name, path in shipped_units(tmp_path).items()}
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


def test_the_score_check_fails_a_root_unit(tmp_path):
    """The check can fail: the exporter as it was before (root, no sandbox) scores high."""
    keep = ("[", "Description=", "ExecStart=", "Type=", "WantedBy=")
    text = "\n".join(line for line in (SYSTEMD / UNITS[0]).read_text().splitlines()
                     if line.startswith(keep))
    weak = tmp_path / "weak.service"
    weak.write_text(text + "\n")
    assert exposure(str(weak)) > MAX_EXPOSURE


def unit_setting(unit: str, key: str) -> list[str]:
    values: list[str] = []
    for line in (SYSTEMD / unit).read_text().splitlines():
        if line.startswith(key + "="):
            values += line.split("=", 1)[1].split()
    return values


def test_capabilities_are_only_what_is_needed():
    for unit in UNITS:
        ambient = unit_setting(unit, "AmbientCapabilities")
        assert sorted(ambient) == ["CAP_DAC_READ_SEARCH", "CAP_SYSLOG", "CAP_SYS_PTRACE"]
        assert sorted(unit_setting(unit, "CapabilityBoundingSet")) == sorted(ambient)
        assert unit_setting(unit, "DynamicUser") == ["yes"]
        assert unit_setting(unit, "RestrictAddressFamilies") == \
            ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"]
        for key, want in (("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                          ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes")):
            assert unit_setting(unit, key) == [want], (unit, key)
    drop_in = (SYSTEMD / "halfopen-exporter.service.d" / "all-netns.conf").read_text()
    assert "AmbientCapabilities=CAP_SYS_ADMIN" in drop_in and "--all-netns" in drop_in


# What the host collectors read of one process and of the kernel log, as JSON:
# its fd count and socket fds (/proc/PID/fd), RLIMIT_NOFILE (/proc/PID/limits),
# and the kernel log records up to the newest one root saw (/dev/kmsg).
PROBE = """
import json, sys
from halfopen.collect import owners
from halfopen.collect.host import kmsg, limits
pid, upto = int(sys.argv[1]), int(sys.argv[2])
scans, denied = owners.scan_fds(pids=[pid])
out = {"fds": [[s.fd_count, sorted(s.socket_fds.items())] for s in scans], "denied": denied}
try:
    out["nofile"] = list(limits.read_nofile(pid))
except OSError as exc:
    out["nofile"] = exc.strerror
try:
    out["kmsg"] = [[r.seq, r.text] for r in kmsg.read_kmsg() if upto < 0 or r.seq <= upto]
except OSError as exc:
    out["kmsg"] = exc.strerror
print(json.dumps(out))
"""


def as_unit_user(unit: str, *args: str, extra_caps: tuple[str, ...] = (), caps: bool = True,
                 code: str | None = None) -> subprocess.CompletedProcess:
    """`python -m halfopen ARGS` (or `python -c CODE ARGS`) as the unit's user would
    run it: uid/gid nobody (a DynamicUser is an unprivileged uid like it), the
    unit's ambient and bounding capabilities and no others, no_new_privs, W^X
    memory refused as MemoryDenyWriteExecute does (prctl PR_SET_MDWE, Linux 6.3+)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    names = [*unit_setting(unit, "AmbientCapabilities"), *extra_caps] if caps else []
    wanted = ",".join("+" + c[len("CAP_"):].lower() for c in names)
    cap_args = ([f"--inh-caps=-all,{wanted}", f"--ambient-caps={wanted}",
                 f"--bounding-set=-all,{wanted}"] if wanted else
                ["--inh-caps=-all", "--bounding-set=-all"])
    run = (f"exec(compile({code!r}, 'probe', 'exec'))" if code is not None else
           "sys.argv[0] = 'halfopen'; runpy.run_module('halfopen', run_name='__main__')")
    mdwe = f"import ctypes, runpy, sys; ctypes.CDLL(None).prctl(65, 1, 0, 0, 0); {run}"
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cap_args,
            "--no-new-privs", "--", sys.executable, "-c", mdwe, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")


def as_root(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    if code is None:
        return run_halfopen(*args, timeout=120, cwd="/")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, cwd="/")


def owners_of(stdout: str) -> set:
    doc = json.loads(stdout)
    return {(s["local_port"], s["peer_port"], s["state"],
             tuple((o["pid"], o["fd"]) for o in s.get("owners", ()))) for s in doc["sockets"]}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change uid and capabilities")
@pytest.mark.parametrize("unit", UNITS)
def test_unit_user_sees_what_root_sees(unit, start_leaker):
    """Owners, fds, limits and the kernel log of a root process (another user's, to
    nobody), read by nobody with the unit's capabilities, equal root's; nobody
    without them sees none of it (the comparison can fail)."""
    unreachable = nobody_cannot_run_halfopen()
    if unreachable:
        pytest.skip(unreachable)
    leaker = start_leaker(initial=12)
    words = ("sport", "=", f":{leaker.port}")
    root = as_root("sockets", "-p", "--json", *words)
    assert root.returncode == 0, root.stderr
    want = owners_of(root.stdout)
    assert len(want) == 13 and all(o for *_k, o in want)  # listener + 12 CLOSE_WAIT, owned
    user = as_unit_user(unit, "sockets", "-p", "--json", *words)
    assert user.returncode == 0, user.stderr
    assert owners_of(user.stdout) == want
    assert "not root" not in user.stderr
    bare = as_unit_user(unit, "sockets", "-p", "--json", *words, caps=False)
    assert bare.returncode == 0, bare.stderr
    assert owners_of(bare.stdout) != want and "not root" in bare.stderr

    r = as_root(str(leaker.pid), "-1", code=PROBE)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["fds"] and seen["fds"][0][0] >= 13 and isinstance(seen["nofile"], list)
    assert seen["kmsg"], "root reads no kernel log records"
    upto = str(seen["kmsg"][-1][0])
    probes = {}
    for who, caps in (("user", True), ("bare", False)):
        r = as_unit_user(unit, str(leaker.pid), upto, code=PROBE, caps=caps)
        assert r.returncode == 0, r.stderr
        probes[who] = json.loads(r.stdout)
    # the ring buffer may lose its oldest records between the two reads: compare
    # what both still hold
    user_kmsg = probes["user"].pop("kmsg")
    assert user_kmsg and user_kmsg == seen.pop("kmsg")[-len(user_kmsg):]
    assert probes["user"] == seen
    assert probes["bare"]["fds"] == [] and probes["bare"]["denied"] == 1
    assert not isinstance(probes["bare"]["kmsg"], list)  # EPERM: kernel.dmesg_restrict


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change uid and capabilities")
def test_all_netns_drop_in_enters_namespaces(start_leaker):
    """With the drop-in's CAP_SYS_ADMIN, nobody enters another network namespace
    (setns) and lists it as root does; without it, a clear refusal."""
    unit = DROP_INS["all-netns.conf"]
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c",
                             'ip link set lo up && exec "$0" "$1" --initial 3',
                             sys.executable, str(ROOT / "tests" / "watch" / "leaker.py")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("ready ")
        args = ("sockets", "-p", "--json", "--netns-pid", str(proc.pid))
        root = as_root(*args)
        assert root.returncode == 0, root.stderr
        user = as_unit_user(unit, *args, extra_caps=("CAP_SYS_ADMIN",))
        assert user.returncode == 0, user.stderr
        want = owners_of(root.stdout)
        assert len(want) == 7  # the listener, 3 CLOSE_WAIT and their 3 FIN_WAIT2 peers
        assert owners_of(user.stdout) == want
        denied = as_unit_user(unit, *args)
        assert denied.returncode == 3 and "CAP_SYS_ADMIN" in denied.stderr
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
