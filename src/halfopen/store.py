"""Documents on disk: snapshot and findings files, the one place that reads them.

A snapshot file is a snapshot document (halfopen.snapshot/1, `Snapshot.to_dict`)
with the doctor's extra facts under "doctor" (nginx's configuration, the other
servers' timeouts), so
`doctor --snapshot FILE` sees what `doctor --save-snapshot FILE` saw. A
findings file is `halfopen doctor --json` output, read by `fix --findings`.
Both are read through fsio.read_file (no symlink, FIFO or device; capped) and
checked as pure data by the model (file_text.parse_json, schema).
"""

from __future__ import annotations

import json
from typing import Any

from . import fsio
from .errors import UsageError
from .model import file_text, schema
from .model.finding import MAX_BYTES as FINDINGS_MAX_BYTES
from .model.finding import Finding, findings_shape
from .model.nginx import NginxConf
from .model.servers import ServerFacts
from .model.snapshot import MAX_BYTES, Snapshot


def read_json(path: str, what: str, max_bytes: int) -> Any:
    """A JSON file a user names: fsio.read_text (refused unless a regular file under
    max_bytes, strict UTF-8), then parsed strictly (file_text.parse_json)."""
    return file_text.parse_json(fsio.read_text(path, what, max_bytes), f"{what} {path}")


def save_snapshot(path: str, snapshot: Snapshot, nginx: NginxConf | None = None,
                  servers: ServerFacts | None = None) -> None:
    data = snapshot.to_dict()
    data["doctor"] = {"nginx": nginx.to_dict() if nginx is not None else None,
                      "servers": servers.to_dict() if servers is not None else None}
    # root writes it: never through a planted symlink (fsio), readable by root only
    fsio.write_atomic(path, json.dumps(data), mode=0o600)


def load_snapshot(path: str) -> tuple[Snapshot, NginxConf | None, ServerFacts | None]:
    """The snapshot, nginx's and the other servers' facts of `path`; UsageError naming
    the file otherwise."""
    # size-capped (`--snapshot /dev/zero` is refused, not read), UTF-8, strict JSON;
    # from_dict checks the whole document against its schema, "doctor" too
    data = read_json(path, "snapshot", MAX_BYTES)
    try:
        snap = Snapshot.from_dict(data)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    doctor = data.get("doctor") or {}
    extra, servers = doctor.get("nginx"), doctor.get("servers")
    return (snap, NginxConf.from_dict(extra) if extra else None,
            ServerFacts.from_dict(servers) if servers else None)


def load_findings(path: str) -> list[Finding]:
    """The findings of a `halfopen doctor --json` file (or a bare list of findings).

    Each finding is checked against the Finding record's shape first, so a
    mistyped file is one line naming the place, never an error inside `fix`.
    """
    doc = read_json(path, "findings", FINDINGS_MAX_BYTES)
    items = doc.get("findings") if isinstance(doc, dict) else doc
    try:
        schema.check(items, findings_shape(), "$.findings")
    except schema.SchemaError as exc:
        raise UsageError(f"{path}: not doctor --json output: {exc}") from None
    return [Finding.from_dict(d) for d in items or ()]
