"""Files the option fuzz points at: good and bad snapshots, findings, histories, configs.

Built once per session under a temporary directory from recorded data
(tests/doctor/cases), so `doctor --snapshot` and `fix --findings` run their
whole body on real-shaped input, not only the option checks.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from harness import CASES

from halfopen.watch import history_db


def small_cases(limit_bytes: int = 12000) -> list[dict]:
    """The recorded doctor cases' snapshots small enough to mutate quickly."""
    docs = []
    for path in sorted(CASES.glob("*.json")):
        if path.stat().st_size <= limit_bytes:
            docs.append(json.loads(path.read_text())["snapshot"])
    return docs


def build(root: Path) -> dict[str, list[str]]:
    """Path pools by role, all under `root` (or harmless devices)."""
    root.mkdir(parents=True, exist_ok=True)
    snaps = small_cases()
    good_snap = root / "snap.json"
    good_snap.write_text(json.dumps(snaps[0]))
    mistyped = dict(snaps[0], sockets=[{"state": 5}])
    (root / "mistyped.json").write_text(json.dumps(mistyped))
    (root / "list.json").write_text("[1, 2]")
    (root / "notutf8.json").write_bytes(b'{"schema": "\xff"}')
    (root / "deep.json").write_text("[" * 50000)
    (root / "empty").write_text("")
    from halfopen.diagnose import report  # noqa: PLC0415
    from halfopen.model.snapshot import Snapshot  # noqa: PLC0415
    rep = report.diagnose(Snapshot.from_dict(snaps[0]))
    findings = root / "findings.json"
    findings.write_text(json.dumps(rep.to_dict()))
    (root / "findings-bad.json").write_text(json.dumps({"findings": [{"id": 1}]}))
    db = root / "history.db"
    if not db.exists():
        rec = history_db.Recorder.open(str(db))
        rec.close()
    (root / "garbage.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    (root / "boxes.txt").write_text("aws-nlb\ncorp 1800 flow\nhaproxy 30 proxy\n")
    (root / "boxes-bad.txt").write_text("corp ² flow\n")
    (root / "web-bad.yml").write_text("tls_server_config:\n  cert_file: [x]\n")
    (root / "web-empty.yml").write_text("# nothing\n")
    (root / "adir").mkdir(exist_ok=True)
    common = [str(root / "empty"), str(root / "adir"), str(root / "missing"), "/dev/null",
              "/dev/zero", str(root / "notutf8.json"), str(root / "deep.json"),
              *file_types(root, good_snap)]
    return {
        "snapshot": [str(good_snap), str(root / "mistyped.json"), str(root / "list.json")] + common,
        "findings": [str(findings), str(root / "findings-bad.json"), str(good_snap)] + common,
        "history": [str(db), str(root / "garbage.db"), str(good_snap)] + common,
        "middlebox": [str(root / "boxes.txt"), str(root / "boxes-bad.txt")] + common,
        "webconfig": [str(root / "web-bad.yml"), str(root / "web-empty.yml")] + common,
        # Never a device: a writer that replaced /dev/null by renaming over it would
        # break the host. Writes stay under root.
        "missing": str(root / "missing") + "/",  # + any text: a path that does not exist
        "output": [str(root / "out"), str(root / "adir"), str(root / "missing-dir" / "x"),
                   str(root / "fifo"), str(root / "link-good"), str(root / "hardlink")],
    }


def file_types(root: Path, good: Path) -> list[str]:
    """Paths that are not plain files, as a user could plant them where root reads: a
    FIFO (an open that blocks), a unix socket, a symlink to a good file and one to the
    FIFO, a second hard link to a good file."""
    fifo, sock = root / "fifo", root / "socket"
    if not fifo.exists():
        os.mkfifo(fifo)
    if not sock.exists():
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(sock))
    links = {root / "link-good": good, root / "link-fifo": fifo}
    for link, target in links.items():
        if not link.is_symlink():
            link.symlink_to(target)
    hard = root / "hardlink"
    if not hard.exists():
        os.link(good, hard)
    return [str(fifo), str(sock), *map(str, links), str(hard)]
