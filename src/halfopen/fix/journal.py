"""The write-ahead journal: each change's intent is on disk before the change.

    {"id": "20250101T120000-ab12:1", "time": "...", "kind": "sysctl", "intent": true,
     "target": "net.ipv4.tcp_syncookies", "netns": "ho-1", "netns_inode": 4026532291,
     "netns_cookie": 4711, "old": "1", "new": "0", "finding": "syn-flood"}
    {"id": "...:2", "time": "...", "kind": "done", "done": "...:1"}
    {"id": "...:3", "time": "...", "kind": "verify", "change": "...:1", "verified": "cured"}
    {"id": "...:4", "time": "...", "kind": "undo", "undoes": "...:1", "outcome": "restored"}

A change is (1) its intent line written and fsync'ed, (2) the change, (3) a
"done" line naming the intent. A run killed between (1) and (3) leaves an
intent whose change may or may not have happened: rollback compares the
current value with old and new and acts on what it finds. An intent that
cannot be written stops the run before its change (JournalError, exit 2).
Lines without "intent" (written before the write-ahead format) are changes
that happened. Rollback undoes every change no "undo" line names, newest
first. The path is --journal, or HALFOPEN_JOURNAL, or
/var/lib/halfopen/journal.jsonl; the file is 0600 in a 0700 directory,
opened O_APPEND|O_NOFOLLOW|O_NONBLOCK and refused unless it is a regular file
we own: a symlink, a FIFO (whose open would block forever) or a device there is
one line, exit 64, before any change.
"""

from __future__ import annotations

import datetime
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any, Optional

from .. import fsio
from ..errors import EXIT_CRITICAL, HalfopenError, UsageError

DEFAULT_PATH = "/var/lib/halfopen/journal.jsonl"
ENV = "HALFOPEN_JOURNAL"
# Test-only: seconds to sleep after an intent is on disk and before its change,
# so a test can SIGKILL the run exactly there. Never set in production.
PAUSE_ENV = "HALFOPEN_TEST_PAUSE_AFTER_INTENT"
MAX_LINE = 1 << 20  # a journal line longer than this is not ours


class JournalError(HalfopenError):
    """The journal cannot be written: nothing more is changed (exit 2).

    changed: the change the line was about had been made already (its
    intent is on disk; only the "done" mark is missing).
    """

    exit_code = EXIT_CRITICAL

    def __init__(self, message: str, changed: bool = False) -> None:
        super().__init__(message)
        self.changed = changed


def default_path() -> str:
    return os.environ.get(ENV) or DEFAULT_PATH


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Journal:
    """An append-only JSON-lines file; every line is fsync'ed before we go on."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.run = datetime.datetime.now().strftime("%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:4]
        self._count = 0
        self._fd: Optional[int] = None

    def open(self) -> Journal:
        """Open for appending before any change, so an unwritable journal stops us early."""
        try:
            self._fd = fsio.open_append(self.path)
        except fsio.UnsafePath:
            raise
        except fsio.WriteFailed as exc:
            raise JournalError(f"{exc}; nothing was changed; set {ENV} or --journal") from None
        return self

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one line and fsync it; JournalError (the file unchanged) if it cannot be."""
        assert self._fd is not None, "Journal.open() first"
        self._count += 1
        entry = {"id": f"{self.run}:{self._count}", "time": _now(), "kind": kind, **fields}
        line = (json.dumps(entry, default=str) + "\n").encode("utf-8")
        size = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(28, "No space left on device (short write)")
            os.fsync(self._fd)
        except OSError as exc:
            try:  # a half line must not stay: the change it names is not made
                os.ftruncate(self._fd, size)
            except OSError:
                pass  # entries() skips a torn last line
            if kind == "done":
                raise JournalError(f"cannot write the journal {self.path}: {exc.strerror}; "
                                   "the last change was made and its intent is on disk: "
                                   "`halfopen fix --rollback` restores it", changed=True) \
                    from None
            raise JournalError(f"cannot write the journal {self.path}: {exc.strerror}; "
                               f"the {kind} change of {fields.get('target', '?')} was not made")\
                from None
        return entry

    def intent(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The write-ahead line of a change about to be made."""
        entry = self.record(kind, intent=True, **fields)
        pause = os.environ.get(PAUSE_ENV)
        if pause:
            time.sleep(float(pause))
        return entry

    def done(self, intent: dict[str, Any], **fields: Any) -> None:
        """Mark an intent's change as made."""
        self.record("done", done=intent["id"], **fields)


def entries(path: str) -> Iterator[dict[str, Any]]:
    """Every line of the journal; a broken line fails loudly with its number.

    A last line with no newline is a write that was cut short (a full disk, a
    kill): its change was never made, so it is skipped.
    """
    data = fsio.read_file(path, "journal", limit=256 << 20, missing_ok=True)
    if data is None:
        return
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        torn = number == len(lines)  # no newline after it
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            if torn:
                return
            # the line is not quoted: a file named here by mistake may hold secrets
            raise UsageError(f"{path}:{number}: not a journal line ({_why(exc)}); "
                             "each line is one JSON object") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str) \
                or not isinstance(entry.get("id"), str):
            raise UsageError(f"{path}:{number}: not a journal line (no kind or id)")
        yield entry


def _why(exc: Exception) -> str:
    """Where a line is wrong, without its text: JSONDecodeError's msg and column."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 at byte {exc.start}"
    return type(exc).__name__


def pending(path: str) -> list[dict[str, Any]]:
    """Changes not yet undone, newest first; each has "_done": was it marked made."""
    changes, undone, done = [], set(), set()
    for entry in entries(path):
        kind = entry["kind"]
        if kind == "undo":
            undone.add(entry.get("undoes"))
        elif kind == "done":
            done.add(entry.get("done"))
        elif kind == "verify":
            continue  # what the doctor saw after a change: nothing to undo
        else:
            changes.append(entry)
    # a line without "intent" predates the write-ahead format: its change was made
    return [dict(e, _done=not e.get("intent") or e["id"] in done)
            for e in reversed(changes) if e["id"] not in undone]
