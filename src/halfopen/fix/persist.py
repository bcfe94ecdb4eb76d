"""/etc/sysctl.d/60-halfopen.conf: the host's sysctls that survive a reboot.

The file is rewritten whole: the keys it already held, updated with the new
ones. Written to a temporary file in the same directory, fsync'ed, renamed
over the old one (atomic); the previous file is kept as FILE.bak first.
Only the host namespace's values belong here: sysctl --system runs in the
host namespace at boot. The path is HALFOPEN_SYSCTL_FILE, or --sysctl-file.
"""

from __future__ import annotations

import datetime
import os
import shutil

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
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_atomic(path: str, text: str) -> str | None:
    """Replace `path` with `text`; return the backup of the old file (None if none)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    backup = None
    if os.path.exists(path):
        backup = path + ".bak"
        shutil.copy2(path, backup)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return backup


def restore(path: str, old_text: str | None) -> str:
    """Put the previous file back (its text is in the journal), or remove ours."""
    if old_text is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return "already absent"
        return "removed"
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(old_text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return "restored"
