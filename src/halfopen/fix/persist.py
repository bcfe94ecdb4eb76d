"""/etc/sysctl.d/60-halfopen.conf: the host's sysctls that survive a reboot.

The file is rewritten whole: the keys it already held, updated with the new
ones. Written through halfopen.fsio (a new file under a random name in the
same directory, O_EXCL|O_NOFOLLOW, fsync'ed, renamed over the old one); the
previous file is kept as FILE.bak first, the same way, 0644 and root's
whatever the old file's mode. A symlink at either name, and an old file that
is not root's, has more than one link or is not a regular file, is refused.
Only the host namespace's values belong here: sysctl --system runs in the
host namespace at boot. The path is HALFOPEN_SYSCTL_FILE, or --sysctl-file.
"""

from __future__ import annotations

import datetime
import os

from .. import fsio

DEFAULT_PATH = "/etc/sysctl.d/60-halfopen.conf"
ENV = "HALFOPEN_SYSCTL_FILE"
HEADER = "# Written by `halfopen fix --persist`; `halfopen fix --rollback` restores the previous file."


def default_path() -> str:
    return os.environ.get(ENV) or DEFAULT_PATH


def parse(text: str) -> dict[str, str]:
    """sysctl.d lines -> {key: value}; comments and blank lines dropped.

    >>> parse("# c\\nnet.core.somaxconn = 4096\\n-net.ipv4.tcp_fin_timeout=30\\n")
    {'net.core.somaxconn': '4096', 'net.ipv4.tcp_fin_timeout': '30'}
    """
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip().lstrip("-").replace("/", ".")] = " ".join(value.split())
    return values


def render(values: dict[str, str], reasons: dict[str, str]) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    lines = [HEADER, f"# {stamp}"]
    for key in sorted(values):
        if key in reasons:
            lines.append(f"# {reasons[key]}")
        lines.append(f"{key} = {values[key]}")
    return "\n".join(lines) + "\n"


def read(path: str) -> str | None:
    """The file's text, None if absent; a symlink there is refused (fsio.UnsafePath)."""
    data = fsio.read_file(path, "--sysctl-file", limit=1 << 20, missing_ok=True)
    return None if data is None else data.decode("utf-8", "replace")


def backup_path(path: str) -> str:
    return path + ".bak"


def check(path: str) -> None:
    """UnsafePath (exit 64) unless `path` and its .bak may be written: `fix --persist`
    calls it before its first change. The file must be a regular file of root's
    (or ours) with one link: one a user planted in a directory they can write is
    refused, not copied (its bytes and mode are theirs: a setuid binary).
    """
    fsio.check_replaceable(path)
    fsio.check_target(backup_path(path))


def write(path: str, text: str) -> str | None:
    """Replace `path` with `text`, the old file kept as PATH.bak first (both through
    fsio: O_EXCL|O_NOFOLLOW temporaries renamed into place). Returns the backup,
    0644 and root's like the file itself (sysctl.d files are world-readable)."""
    check(path)  # refuse before anything is written
    backup = fsio.backup(path, mode=0o644)
    fsio.write_atomic(path, text, mode=0o644)
    return backup


def restore(path: str, old_text: str | None) -> str:
    """Put the previous file back (its text is in the journal), or remove ours."""
    if old_text is None:
        fsio.check_target(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return "already absent"
        return "removed"
    fsio.write_atomic(path, old_text, mode=0o644)
    return "restored"
