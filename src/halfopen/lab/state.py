"""The lab's state file: what a run created, written before it is created.

A run records each namespace, process and host sysctl it is about to touch in
/run/halfopen-lab/state.json, so that `halfopen lab clean` can undo a run that
crashed, was killed, or was kept with --keep. Namespaces the lab creates carry
the prefix "ho-" and are also found by name when the state file is lost.

    {"runs": {"3fa2": {"owner": 4711, "scenario": "leaky-server",
                       "netns": ["ho-3fa2-srv"], "pids": [[4712, 98123]],
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

STATE_DIR = "/run/halfopen-lab"
STATE_FILE = "state.json"
NETNS_PREFIX = "ho-"
JOURNAL = "journal.jsonl"  # `halfopen fix --journal`, in the run's directory


def run_dir(directory: str, run_id: str) -> str:
    """A run's own directory under the state directory (its fix journal)."""
    return os.path.join(directory, f"run-{run_id}")


def journal_entries(path: str) -> list[dict[str, Any]]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def pending_host_entries(path: str) -> list[dict[str, Any]]:
    """Changes to the host namespace in a fix journal that no undo line names."""
    entries = journal_entries(path)
    undone = {e.get("undoes") for e in entries if e.get("kind") == "undo"}
    return [e for e in entries if e.get("kind") != "undo" and e.get("netns", "host") == "host"
            and e.get("id") not in undone]


def start_time(pid: int, proc: str = "/proc") -> int | None:
    """Field 22 of /proc/PID/stat (starttime in clock ticks), None if gone.

    "4712 (python3) S 1 ..." -> the 22nd field, counted after the comm's ')'.
    """
    try:
        with open(f"{proc}/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[19])


class StateFile:
    """Read-modify-write of the state file under an flock."""

    def __init__(self, directory: str = STATE_DIR) -> None:
        self.directory = directory
        self.path = os.path.join(directory, STATE_FILE)

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self._read()
            yield data
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            os.close(fd)

    def read(self) -> dict[str, Any]:
        return self._read()

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {"runs": {}}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}: not JSON ({exc}); remove it after checking "
                             "`ip netns list` for ho-* namespaces") from exc
        data.setdefault("runs", {})
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
