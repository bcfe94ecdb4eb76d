"""The lab's state file: what a run created, written before it is created.

A run records each namespace, process and host sysctl it is about to touch in
/run/halfopen-lab/state.json, so that `halfopen lab clean` can undo a run that
crashed, was killed, or was kept with --keep. This file is the lab's only
claim on what it made: `lab clean` removes what a run recorded here (a
namespace only while its inode and cookie, `netns_ids`, are still the ones
recorded) and leaves every other "ho-*" namespace, and its processes, alone.

    {"runs": {"3fa2": {"owner": 4711, "scenario": "leaky-server",
                       "netns": ["ho-3fa2-srv"], "netns_ids": {"ho-3fa2-srv": [4026532291, 4711]},
                       "pids": [[4712, 98123]],
                       "host_sysctls": {"net/netfilter/nf_conntrack_max": "262144"}}}}

`pids` pairs a pid with its start time (field 22 of /proc/PID/stat) so that a
recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from typing import Any

from .. import fsio, store
from ..errors import HalfopenError, UsageError
from ..kernel import procfs
from ..model import file_text

STATE_DIR = "/run/halfopen-lab"
STATE_FILE = "state.json"
NETNS_PREFIX = "ho-"
JOURNAL = "journal.jsonl"  # `halfopen fix --journal`, in the run's directory


def run_dir(directory: str, run_id: str) -> str:
    """A run's own directory under the state directory (its fix journal)."""
    return os.path.join(directory, f"run-{run_id}")


def _journal_lines(path: str) -> list[dict[str, Any]]:
    """Every complete line of a `halfopen fix` journal (the part after the last
    newline is a torn write of a killed run: its change was never made)."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")[:-1]
    except FileNotFoundError:
        return []
    return [e for e in (json.loads(x) for x in lines if x.strip()) if isinstance(e, dict)]


def journal_entries(path: str) -> list[dict[str, Any]]:
    """The change lines of a fix journal, without its "done" and "undo" marks. The lab
    reads it only to know whether `halfopen fix --rollback` has work to do."""
    return [e for e in _journal_lines(path) if e.get("kind") not in ("done", "undo")]


def pending_host_entries(path: str) -> list[dict[str, Any]]:
    """Changes to the host namespace in a fix journal that no undo line names."""
    lines = _journal_lines(path)
    undone = {e.get("undoes") for e in lines if e.get("kind") == "undo"}
    return [e for e in lines if e.get("kind") not in ("done", "undo")
            and e.get("netns", "host") == "host" and e.get("id") not in undone]


start_time = procfs.start_time  # field 22 of /proc/PID/stat, None if gone


class LabStateError(HalfopenError):
    """The state file is damaged: nothing is cleaned on its word (exit 3)."""


class StateFile:
    """Read-modify-write of the state file under an flock."""

    def __init__(self, directory: str = STATE_DIR) -> None:
        self.directory = directory
        self.path = os.path.join(directory, STATE_FILE)

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = fsio.open_append(self.path + ".lock", flags=os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._read()
            yield data
            fsio.write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True),
                              mode=0o600, dir_mode=0o700)
        finally:
            os.close(fd)

    def read(self) -> dict[str, Any]:
        return self._read()

    def _read(self) -> dict[str, Any]:
        if not os.path.lexists(self.path):
            return {"runs": {}}
        advice = "remove it after checking `ip netns list` for ho-* namespaces"
        try:  # size-capped, UTF-8, strict JSON: a damaged file is one line, exit 3
            data = store.read_json(self.path, "lab state file", 16 * file_text.MiB)
        except UsageError as exc:
            raise LabStateError(f"{exc}; {advice}") from None
        runs = data.get("runs", {}) if isinstance(data, dict) else None
        if not isinstance(runs, dict) or not all(isinstance(r, dict) for r in runs.values()):
            raise LabStateError(f"{self.path} is not a lab state file ({{\"runs\": {{ID: "
                                f"{{...}}}}}} expected); {advice}")
        data["runs"] = runs
        return data

    def run(self, run_id: str) -> RunRecord:
        return RunRecord(self, run_id)


class RunRecord:
    """One run's entry in the state file."""

    def __init__(self, state: StateFile, run_id: str) -> None:
        self.state = state
        self.run_id = run_id

    def begin(self, scenario: str) -> None:
        with self.state.edit() as data:
            data["runs"][self.run_id] = {"owner": os.getpid(), "owner_start": start_time(os.getpid()),
                                         "scenario": scenario, "netns": [], "pids": [],
                                         "host_sysctls": {}}

    def _entry(self, data: dict[str, Any]) -> dict[str, Any]:
        return data["runs"].setdefault(self.run_id, {"netns": [], "pids": [], "host_sysctls": {}})

    def add_netns(self, name: str) -> None:
        with self.state.edit() as data:
            self._entry(data)["netns"].append(name)

    def mark_netns(self, name: str, inode: int, cookie: int | None) -> None:
        """The namespace's identity once created: `lab clean` removes a namespace by
        this name only while it is still this one (a cookie is never reused)."""
        with self.state.edit() as data:
            self._entry(data).setdefault("netns_ids", {})[name] = [inode, cookie]

    def add_pid(self, pid: int) -> None:
        with self.state.edit() as data:
            self._entry(data)["pids"].append([pid, start_time(pid)])

    def add_host_sysctl(self, key: str, original: str) -> None:
        with self.state.edit() as data:
            self._entry(data)["host_sysctls"].setdefault(key, original)

    def forget_host_sysctl(self, key: str) -> None:
        with self.state.edit() as data:
            self._entry(data)["host_sysctls"].pop(key, None)

    def end(self) -> None:
        with self.state.edit() as data:
            data["runs"].pop(self.run_id, None)
