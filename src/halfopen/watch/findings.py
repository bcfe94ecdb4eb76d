"""The doctor's findings on each sample, unless the doctor is switched off.

The watch and the exporter show findings but do not need them: with
`--no-doctor` they carry on without and say so once in a note.
"""

from __future__ import annotations

from collections.abc import Callable

from ..diagnose.report import diagnose, new_tally
from ..diagnose.tally import Tally
from ..model.finding import Finding
from ..model.snapshot import Snapshot


def _diagnose(snapshot: Snapshot, table: Tally | None) -> list[Finding]:
    return diagnose(snapshot, table=table).findings


class Doctor:
    """Runs the doctor (`run`, diagnose() by default) on snapshots; `available` False
    and `note` say when it is off.

    A full sample feeds its dump to `tally()` as it streams and passes that to
    findings(): the sample keeps no socket list (diagnose.tally)."""

    def __init__(self, enabled: bool = True,
                 run: Callable[[Snapshot, Tally | None], list[Finding]] = _diagnose) -> None:
        self.enabled = enabled
        self.run = run
        self.note = "" if enabled else "doctor off (--no-doctor)"

    @property
    def available(self) -> bool:
        return self.enabled

    def tally(self) -> Tally | None:
        """An empty Tally for the next dump, or None when the doctor is off."""
        return new_tally() if self.enabled else None

    def findings(self, snapshot: Snapshot, table: Tally | None = None) -> list[Finding] | None:
        """The findings of one snapshot other than "ok" (its sockets in `table`, else in
        the snapshot's list); None when the doctor is off."""
        if not self.enabled:
            return None
        return [f for f in self.run(snapshot, table) if f.severity != "ok"]
