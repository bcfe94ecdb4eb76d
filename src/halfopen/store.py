"""Snapshot files: the one place that writes and reads them.

A file is a snapshot document (halfopen.snapshot/1, `Snapshot.to_dict`) with
the doctor's extra facts under "doctor" (nginx's configuration), so
`doctor --snapshot FILE` sees what `doctor --save-snapshot FILE` saw.
"""

from __future__ import annotations

import json

from . import fsio
from .errors import UsageError
from .model.nginx import NginxConf
from .model.snapshot import Snapshot


def save_snapshot(path: str, snapshot: Snapshot, nginx: NginxConf | None = None) -> None:
    data = snapshot.to_dict()
    data["doctor"] = {"nginx": nginx.to_dict() if nginx is not None else None}
    # root writes it: never through a planted symlink (fsio), readable by root only
    fsio.write_atomic(path, json.dumps(data), mode=0o600)


def load_snapshot(path: str) -> tuple[Snapshot, NginxConf | None]:
    """The snapshot and nginx facts of `path`; UsageError naming the file otherwise."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read snapshot {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    try:
        snap = Snapshot.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path} is not a valid halfopen snapshot: {exc}") from None
    try:
        extra = (data.get("doctor") or {}).get("nginx")
    except AttributeError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    return snap, (NginxConf.from_dict(extra) if extra else None)
