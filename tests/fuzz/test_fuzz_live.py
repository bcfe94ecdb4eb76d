"""The live commands' valid runs, fuzzed in a sandbox: its own pid, mount and network
namespace (unshare), so /proc holds only the sandbox's processes and the socket
table only its loopback. HALFOPEN_FUZZ_LIVE_EXAMPLES sets the count, else
HALFOPEN_FUZZ_EXAMPLES as for every other target (20,000 in CI: about 40 ms a run,
13 minutes on one core).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import EXAMPLES as _DEFAULT

EXAMPLES = int(os.environ.get("HALFOPEN_FUZZ_LIVE_EXAMPLES", str(_DEFAULT)))
# hostile process names (live_names.py): HALFOPEN_FUZZ_NAME_EXAMPLES, else a
# quarter of the count: a run there is one of nine commands, a third of them
# the doctor (about 0.1 s), where a live run above costs 40 ms
NAME_EXAMPLES = int(os.environ.get("HALFOPEN_FUZZ_NAME_EXAMPLES", str(max(1, _DEFAULT // 4))))
# the sandbox's bound: 0.15 s a run at most (a loaded 2-core machine), plus start-up
SANDBOX_TIMEOUT_S = 300 + 0.15 * max(EXAMPLES, NAME_EXAMPLES)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(SANDBOX_TIMEOUT_S + 60)]
HERE = Path(__file__).parent


def _in_sandbox(work, module: str) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1)")
    env = dict(os.environ, HALFOPEN_FUZZ_OUT=str(work))
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--net", sys.executable,
                        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        str(HERE / module)],
                       capture_output=True, text=True, timeout=SANDBOX_TIMEOUT_S, env=env, cwd=HERE)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout


def test_live_commands_in_a_sandbox(work):
    _in_sandbox(work, "live_inside.py")


def test_hostile_process_names_in_a_sandbox(work):
    """Names with escape sequences, newlines, markup, $(), bidi, any bytes (issue 20)."""
    _in_sandbox(work, "live_names.py")
