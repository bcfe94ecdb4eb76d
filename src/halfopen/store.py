"""Snapshot files: the one place that writes and reads them.

A file is a snapshot document (halfopen.snapshot/1, `Snapshot.to_dict`) with
the doctor's extra facts under "doctor" (nginx's configuration), so
`doctor --snapshot FILE` sees what `doctor --save-snapshot FILE` saw.
"""

from __future__ import annotations

import json

from . import fsio
from .errors import UsageError
from .model import files
from .model.nginx import NginxConf
from .model.snapshot import MAX_BYTES, Snapshot


def save_snapshot(path: str, snapshot: Snapshot, nginx: NginxConf | None = None) -> None:
    data = snapshot.to_dict()
    data["doctor"] = {"nginx": nginx.to_dict() if nginx is not None else None}
    # root writes it: never through a planted symlink (fsio), readable by root only
    fsio.write_atomic(path, json.dumps(data), mode=0o600)


def load_snapshot(path: str) -> tuple[Snapshot, NginxConf | None]:
    """The snapshot and nginx facts of `path`; UsageError naming the file otherwise."""
    # size-capped (`--snapshot /dev/zero` is refused, not read), UTF-8, strict JSON;
    # from_dict checks the whole document against its schema, "doctor" too
    data = files.read_json(path, "snapshot", MAX_BYTES)
    try:
        snap = Snapshot.from_dict(data)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    extra = (data.get("doctor") or {}).get("nginx")
    return snap, (NginxConf.from_dict(extra) if extra else None)
