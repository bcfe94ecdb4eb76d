"""The journal: one JSON line per change halfopen made, and per undo.

    {"id": "20250101T120000-ab12:1", "time": "...", "kind": "sysctl",
     "target": "net.ipv4.tcp_keepalive_time", "netns": "host",
     "old": "7200", "new": "300", "finding": "keepalive-off"}
    {"id": "...", "time": "...", "kind": "undo", "undoes": "20250101T120000-ab12:1",
     "outcome": "restored"}

A line is written and fsync'ed right after its change succeeded, so after a
failure midway the journal holds exactly what changed. Rollback undoes every
change no "undo" line names, newest first. The path is HALFOPEN_JOURNAL, or
--journal, or /var/lib/halfopen/journal.jsonl.
"""

from __future__ import annotations

import datetime
import json
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any

from ..errors import UsageError

DEFAULT_PATH = "/var/lib/halfopen/journal.jsonl"
ENV = "HALFOPEN_JOURNAL"


def default_path() -> str:
    return os.environ.get(ENV) or DEFAULT_PATH


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Journal:
    """An append-only JSON-lines file; `record` writes one line and syncs it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.run = datetime.datetime.now().strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:4]
        self._count = 0
        self._file: IO[str] | None = None

    def open(self) -> Journal:
        """Open for appending before any change, so an unwritable journal stops us early."""
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open, close() closes
        except OSError as exc:
            raise UsageError(f"cannot write the journal {self.path}: {exc.strerror}; "
                             f"set {ENV} or --journal") from None
        return self

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Journal:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._count += 1
        entry = {"id": f"{self.run}:{self._count}", "time": _now(), "kind": kind, **fields}
        assert self._file is not None, "Journal.open() first"
        self._file.write(json.dumps(entry, sort_keys=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        return entry


def entries(path: str) -> Iterator[dict[str, Any]]:
    """Every line of the journal; a broken line fails loudly with its number."""
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - `with f` below; only open() may miss
    except FileNotFoundError:
        return
    with f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: not a journal line ({exc.msg}): "
                                 f"{line.strip()[:80]}") from None


def pending(path: str) -> list[dict[str, Any]]:
    """Changes not yet undone, newest first."""
    changes, undone = [], set()
    for entry in entries(path):
        if entry["kind"] == "undo":
            undone.add(entry["undoes"])
        else:
            changes.append(entry)
    return [e for e in reversed(changes) if e["id"] not in undone]
