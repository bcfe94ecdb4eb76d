"""`persist`: the host's sysctl steps written to /etc/sysctl.d (fix.persist) to outlive a reboot.

Not a finding's fix: `fix --apply --persist` plans it from the sysctl steps
(changed or already set, host namespace only) after they are applied.

    facts   the file's text now (None: absent)
    plan    change "N keys" -> the merged file, or already set (it holds them)
    journal {"kind": "file", "target": PATH, "old": TEXT|null, "new": TEXT,
             "backup": PATH.bak|null}
    undo    the old text back (or the file removed), unless it was edited since
"""

from __future__ import annotations

from typing import Any, Optional

from halfopen.records import record

from .. import persist
from .base import Action, Done, Host, Step


@record(frozen=True)
class FileWrite:
    """A persist step's record, and its journal line's."""

    path: str
    old: Optional[str]  # None: there was no file
    new: str
    backup: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.path, "old": self.old, "new": self.new, "backup": self.backup}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileWrite:
        return cls(d["target"], d["old"], d["new"], d.get("backup"))


class PersistSysctls(Action):
    name, kind = "persist", "file"

    def plan(self, steps: list[Step], path: str) -> Step:
        return self.compare(steps, path, persist.read(path))

    def compare(self, steps: list[Step], path: str, old_text: Optional[str]) -> Step:
        """The file the host's sysctl steps make of `old_text`, as a Step."""
        chosen = [s for s in steps if s.action == "sysctl" and s.netns == "host"
                  and s.status in ("change", "already set") and s.change is not None]
        values = persist.parse(old_text or "")
        reasons = {}
        for s in chosen:
            values[s.target] = s.new  # sysctl.check()'s text, as the record holds it
            reasons[s.target] = f"{s.finding}: {s.reason}"
        step = Step("", "", self.name, path, "change", current=f"{len(values)} keys",
                    new=f"{len(chosen)} keys written")
        if old_text is not None and persist.parse(old_text) == values:
            step.status = "already set"
            return step
        backup = persist.backup_path(path) if old_text is not None else None
        step.change = FileWrite(path, old_text, persist.render(values, reasons), backup)
        return step

    def apply(self, step: Step, jnl: Any, host: Host) -> Done:
        if step.status == "already set":
            return Done(step.target, "already set", step.current)
        rec = step.change
        assert isinstance(rec, FileWrite), step  # planned by this action
        intent = jnl.intent(self.kind, **rec.to_dict())
        persist.write(rec.path, rec.new)
        jnl.done(intent)
        return Done(rec.path, "set", step.new + (f"; previous file kept as {rec.backup}"
                                                 if rec.backup else ""))

    def undo(self, entry: dict[str, Any], host: Host) -> tuple[str, str]:
        rec = FileWrite.from_dict(entry)
        now = persist.read(rec.path)
        if now == rec.old:
            return "already set", ""
        if now != rec.new:
            return "left alone", "the file was edited since"
        return persist.restore(rec.path, rec.old), ""
