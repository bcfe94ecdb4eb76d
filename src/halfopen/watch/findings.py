"""The doctor's findings on each sample, unless the doctor is switched off.

The watch and the exporter show findings but do not need them: with
`--no-doctor` they carry on without and say so once in a note.
"""

from __future__ import annotations

from collections.abc import Callable

from ..diagnose.report import diagnose
from ..model.finding import Finding
from ..model.snapshot import Snapshot


def _diagnose(snapshot: Snapshot) -> list[Finding]:
    return diagnose(snapshot).findings


class Doctor:
    """Runs the doctor (`run`, diagnose() by default) on snapshots; `available` False
    and `note` say when it is off."""

    def __init__(self, enabled: bool = True,
                 run: Callable[[Snapshot], list[Finding]] = _diagnose) -> None:
        self.enabled = enabled
        self.run = run
        self.note = "" if enabled else "doctor off (--no-doctor)"

    @property
    def available(self) -> bool:
        return self.enabled

    def findings(self, snapshot: Snapshot) -> list[Finding] | None:
        """The findings of one snapshot other than "ok"; None when the doctor is off."""
        if not self.enabled:
            return None
        return [f for f in self.run(snapshot) if f.severity != "ok"]
