"""The doctor's findings, when the doctor is installed.

The watch and the exporter show findings but do not need them: if
halfopen.diagnose offers no entry point, or the doctor fails on a snapshot,
they carry on without findings and say so once in a note.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..model.finding import Finding
from ..model.snapshot import Snapshot

# Entry points tried in order: module, function(snapshot) -> list[Finding] or a report
# with a .findings list.
ENTRY_POINTS = (
    ("halfopen.diagnose.report", "diagnose"),  # diagnose(snapshot) -> Report(.findings)
)


class Doctor:
    """Runs the doctor on snapshots; `available` False and `note` say why not."""

    def __init__(self, enabled: bool = True) -> None:
        self.note = ""
        self._run: Callable[[Snapshot], object] | None = None
        if not enabled:
            self.note = "doctor off (--no-doctor)"
            return
        for module, attr in ENTRY_POINTS:
            try:
                mod = importlib.import_module(module)
            except ImportError:
                continue
            fn = getattr(mod, attr, None)
            if callable(fn):
                self._run = fn
                return
        self.note = "doctor not installed: findings are not shown"

    @property
    def available(self) -> bool:
        return self._run is not None

    def findings(self, snapshot: Snapshot) -> list[Finding] | None:
        """The findings of one snapshot; None when the doctor is unavailable or failed."""
        if self._run is None:
            return None
        try:
            result = self._run(snapshot)
        except Exception as exc:  # noqa: BLE001 - a rule's bug must not stop the watch
            self.note = f"doctor failed: {type(exc).__name__}: {exc}"
            return None
        items: Any = getattr(result, "findings", result)
        out = []
        for f in items or ():
            out.append(f if isinstance(f, Finding) else Finding.from_dict(f))
        return [f for f in out if f.severity not in ("ok",)]
