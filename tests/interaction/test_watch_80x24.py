"""`halfopen watch` in a real terminal of 80x24 (tmux): whole short headers, the
findings kept (first, under the headline), and nothing cut off at the bottom."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import uuid

import pytest
from tests.helpers import halfopen_argv, wait_for

from .conftest import LEAKER

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")


def test_watch_is_readable_at_80x24(netns):
    server = f"hoP-{uuid.uuid4().hex[:8]}"  # our own tmux server: no one else's sessions
    tmux = ["tmux", "-L", server]
    leak = f"ip netns exec {netns} {sys.executable} {LEAKER} --initial 40 >/dev/null"
    watch = shlex.join(halfopen_argv("watch", "--netns", netns, "--interval", "1"))
    script = f"{leak} & sleep 1; {watch}; kill %1"
    subprocess.run([*tmux, "new-session", "-d", "-s", "w", "-x", "80", "-y", "24",
                    "sh -c " + shlex.quote(script)], check=True, timeout=30)
    try:
        def frame():
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "w"], capture_output=True,
                                    text=True, timeout=30).stdout
            ready = "close-wait-leak" in screen and "processes with most CLOSE_WAIT" in screen
            return screen if ready and " 40 " in screen else None
        screen = wait_for("watch to draw the leak", frame, timeout=120, step=1)
    finally:
        subprocess.run([*tmux, "kill-server"], timeout=30)
    lines = screen.splitlines()
    print(screen)
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("halfopen watch ") and lines[1] == "findings"
    header = next(line for line in lines if line.lstrip().startswith("pid"))
    assert header.split() == ["pid", "comm", "CW", "CW/min", "oldest", "fds", "limit", "fd%",
                              "full", "in", "trend"], header
    assert "…" not in header and "clos" not in header
    leak_row = next(line for line in lines if re.match(r"\s*[0-9]+ +leaker ", line))
    assert leak_row.split()[2] == "40", leak_row
    assert any("close-wait-leak" in line and "leaker" in line for line in lines[2:8])
    assert "conntrack " in screen  # the facts line, the last one, is not cut off
    assert not any(line.strip() == "..." for line in lines)  # nothing cropped by rich.Live
