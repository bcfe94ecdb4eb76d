"""The live commands' valid runs, fuzzed in a sandbox: its own pid, mount and network
namespace (unshare), so /proc holds only the sandbox's processes and the socket
table only its loopback. HALFOPEN_FUZZ_LIVE_EXAMPLES sets the count (default 100:
a live run reads the kernel's whole TCP hash, about 0.1 s on a busy host).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns
HERE = Path(__file__).parent


def test_live_commands_in_a_sandbox(work):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1)")
    env = dict(os.environ, HALFOPEN_FUZZ_OUT=str(work))
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--net", sys.executable,
                        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        str(HERE / "live_inside.py")],
                       capture_output=True, text=True, timeout=1500, env=env, cwd=HERE)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout
