"""Run one scenario: preflight, build, break, diagnose, fix, verify, remove.

Everything the run creates is removed on success, on failure, on Ctrl-C and
on SIGTERM/SIGHUP (turned into KeyboardInterrupt so `finally` runs), unless
--keep asks to leave it for exploring; `halfopen lab clean` removes it then.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import time
import traceback
from typing import TextIO

from ..collect import netns as netns_mod
from . import scenarios
from .scenario import Result
from .state import NETNS_PREFIX, STATE_DIR, StateFile, run_dir, start_time
from .topo import Lab, LabError, Narrator, remove_netns, stop_pid, undo_fixes


class Interrupted(KeyboardInterrupt):
    pass


# the Debian package that brings each tool the lab runs
TOOL_PACKAGES = {"ip": "iproute2", "ss": "iproute2", "nstat": "iproute2", "sysctl": "procps",
                 "nft": "nftables", "conntrack": "conntrack", "hping3": "hping3"}


def preflight(needs: tuple[str, ...] = ()) -> str | None:
    """What is missing to run a lab (one line), or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veth, nft): run it with sudo"
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespace support (/proc/self/ns/net missing)"
    for tool in ("ip", "ss", "nstat", "sysctl", *needs):
        if shutil.which(tool) is None:
            package = TOOL_PACKAGES.get(tool, tool)
            return f"{tool} is not installed: apt-get install {package} (or scripts/install-deps --test)"
    return None


def _new_run_id() -> str:
    taken = set(netns_mod.list_named())
    while True:
        rid = secrets.token_hex(2)
        if not any(n.startswith(f"{NETNS_PREFIX}{rid}-") for n in taken):
            return rid


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run(name: str, keep: bool = False, out: TextIO = sys.stdout,
        state: StateFile | None = None) -> Result:
    scenario = scenarios.load(name)
    state = state or StateFile()
    run_id = _new_run_id()
    say = Narrator(out)
    result = Result(scenario=name, run_id=run_id, expect=list(scenario.FINDINGS))
    record = state.run(run_id)
    record.begin(name)
    lab = Lab(run_id, record, say)
    old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    t0 = time.monotonic()
    say.step(f"lab {name} (run {run_id}): {scenario.SUMMARY}")
    say.note(f"expected finding(s): {', '.join(scenario.FINDINGS)}")
    try:
        scenario(lab, result).run()  # sets the verdict from its checks
    except KeyboardInterrupt as exc:
        result.verdict = "interrupted"
        result.error = f"interrupted ({exc or 'SIGINT'})"
    except LabError as exc:
        result.verdict = "error"
        result.error = str(exc)
    except Exception as exc:  # a scenario bug: report it, still clean up
        result.verdict = "error"
        result.error = f"{type(exc).__name__}: {exc}"
        if os.environ.get("HALFOPEN_LAB_DEBUG"):
            traceback.print_exc()
    finally:
        result.shrunk = dict(lab.shrunk)
        result.host_changes = dict(lab.host_touched)
        # a second Ctrl-C during cleanup must not leave things behind
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if keep and result.verdict != "interrupted":
                say.step("kept for exploring (--keep)")
                for role, ns in lab.namespaces.items():
                    say.note(f"{role}: ip netns exec {ns} bash")
                say.note("remove with: halfopen lab clean")
            else:
                say.step("clean up")
                result.leftovers = lab.teardown()
                for app in lab.apps:
                    if start_time(app.pid) is not None and app.proc.poll() is None:
                        result.leftovers.append(f"process {app.pid} still runs")
                record.end()
        finally:
            signal.signal(signal.SIGINT, old_int)
            for s, h in old.items():
                signal.signal(s, h)
    result.duration_s = round(time.monotonic() - t0, 1)
    if result.leftovers:
        result.verdict = "error"
        result.error = (result.error + "; " if result.error else "") + "left behind: " + \
            "; ".join(result.leftovers)
    _summary(result, say)
    return result


def _summary(result: Result, say: Narrator) -> None:
    say.step("verdict")
    if result.shrunk:
        say.note("timers and limits shrunk inside the lab namespaces: " +
                 ", ".join(f"{k}={v}" for k, v in result.shrunk.items()))
    if result.host_changes:
        say.note("host-wide sysctls changed for the run and restored: " +
                 ", ".join(f"{k} (was {v})" for k, v in result.host_changes.items()))
    diag = "the doctor" if result.doctor == "ran" else "direct checks only"
    if result.error:
        say.note(f"error: {result.error}")
    ok = sum(1 for c in result.checks if c.ok)
    bad = sum(1 for c in result.checks if c.ok is False)
    say.out.write(f"VERDICT {result.scenario}: {result.verdict.upper()} — {ok} checks passed, "
                  f"{bad} failed, diagnosis by {diag}, fixed by {', '.join(result.fixed_by) or '-'}, "
                  f"{result.duration_s}s\n")
    say.out.flush()


def clean(out: TextIO = sys.stdout, state: StateFile | None = None) -> list[str]:
    """Remove what crashed or kept runs recorded in the state file; returns what was
    removed, and, prefixed "left alone", what looked like the lab's but is not recorded."""
    state = state or StateFile()
    say = Narrator(out)
    removed: list[str] = []
    recorded: set[str] = set()
    if not os.path.isdir(state.directory):
        return _foreign(recorded, state.directory)
    with state.edit() as data:
        for run_id, run in list(data["runs"].items()):
            recorded.update(run.get("netns", []))
            owner = run.get("owner")
            if owner and owner != os.getpid() and start_time(owner) == run.get("owner_start") \
                    and start_time(owner) is not None:
                continue  # that run is still going: not ours to end
            for pid, started in run.get("pids", []):
                if started is not None and start_time(pid) == started:
                    stop_pid(pid, started)
                    removed.append(f"process {pid}")
            ids = run.get("netns_ids", {})
            for ns in run.get("netns", []):
                if not os.path.exists(os.path.join(netns_mod.NETNS_RUN_DIR, ns)):
                    continue
                why = _not_ours(ns, ids.get(ns))
                if why:
                    removed.append(f"left alone netns {ns}: {why}")
                    continue
                remove_netns(ns, say)
                removed.append(f"netns {ns}")
            for key, original in run.get("host_sysctls", {}).items():
                say.cmd(f"sysctl -w {key}={original}    # restore")
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(original)
                removed.append(f"host sysctl {key} restored to {original}")
            directory = run_dir(state.directory, run_id)
            if os.path.isdir(directory):
                problems = undo_fixes(directory, say)
                if problems:  # keep the run: a later clean tries again
                    removed.append("NOT restored: " + "; ".join(problems))
                    continue
                removed.append(f"run directory {directory} (its halfopen fix journal)")
            del data["runs"][run_id]
        for entry in sorted(os.listdir(state.directory)):  # a run dir whose run was ended
            rid = entry[len("run-"):]
            if entry.startswith("run-") and rid not in data["runs"]:
                problems = undo_fixes(os.path.join(state.directory, entry), say)
                removed.append("NOT restored: " + "; ".join(problems) if problems
                               else f"run directory {os.path.join(state.directory, entry)}")
    return removed + _foreign(recorded, state.directory)


def _not_ours(name: str, recorded: list | None) -> str:
    """'' when the namespace now called `name` is the one the run created."""
    if not recorded:
        return ""  # recorded by name just before `ip netns add`, which did not finish
    inode, cookie = recorded
    space = netns_mod.named(name)
    now = netns_mod.cookie(space)
    if (cookie is not None and now is not None and now != cookie) or \
            (cookie is None and space.inode != inode):
        return "the namespace with that name is not the one the run created (recreated since)"
    return ""


def _foreign(recorded: set[str], directory: str) -> list[str]:
    """ho-* namespaces no record names: another tool's, or a lost state file's. Left be."""
    return [f"left alone netns {ns}: no lab run recorded it in {directory} (remove it with "
            f"`ip netns del {ns}` once you know whose it is)"
            for ns in _lab_namespaces() if ns not in recorded]


def _lab_namespaces() -> list[str]:
    return sorted(n for n in netns_mod.list_named() if n.startswith(NETNS_PREFIX))


__all__ = ["run", "clean", "preflight", "STATE_DIR"]
