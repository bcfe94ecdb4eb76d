"""The fuzz suite's harness: run halfopen in-process, and what every run must satisfy.

Every generated input must end in exit 0, 1, 2, 3 or 64, print no traceback,
and never reach main()'s last line of defence ("internal error"): an input that
gets there was not checked at the edge. Counts: HALFOPEN_FUZZ_EXAMPLES inputs
per target (default 20,000, the CI figure); HALFOPEN_FUZZ_EXAMPLES=500 for a
quick local run.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from halfopen.cli.main import main

EXAMPLES = int(os.environ.get("HALFOPEN_FUZZ_EXAMPLES", "20000"))
EXITS = {0, 1, 2, 3, 64}
TIME_BOUND_S = 10.0  # one run; a hang or a runaway read fails the example
# A whole target: pytest-timeout's 300 s (pyproject) is for ordinary tests; a
# target at 20,000 inputs takes several minutes on a shared 2-core machine.
TARGET_TIMEOUT_S = 300 + 0.2 * EXAMPLES
CASES = Path(__file__).parent.parent / "doctor" / "cases"

FUZZ = settings(
    max_examples=EXAMPLES, deadline=timedelta(seconds=3 * TIME_BOUND_S), database=None,
    derandomize=bool(os.environ.get("HALFOPEN_FUZZ_DERANDOMIZE")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """A scratch directory, in tmpfs when there is one: SQLite's fsyncs on a disk
    would cost more than the runs themselves."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="halfopen-fuzz-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Hung(BaseException):
    """A run past its time bound: raised from SIGALRM, a BaseException so that no
    handler inside halfopen swallows it; the example fails naming the argv."""


def _hung(_signum: int, _frame: object) -> None:
    raise Hung(f"a run took more than {2 * TIME_BOUND_S:g}s")


def run(argv: list[str]) -> tuple[int, str, str]:
    """halfopen.cli.main.main(argv) with stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, 2 * TIME_BOUND_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    took = time.monotonic() - t0
    assert took < TIME_BOUND_S, f"{argv!r} took {took:.1f}s"
    return code, out.getvalue(), err.getvalue()


def check(argv: list[str]) -> tuple[int, str, str]:
    code, out, err = run(argv)
    assert code in EXITS, (argv, code, err[-2000:])
    assert "Traceback" not in err, (argv, err[-2000:])
    assert "internal error" not in err, (argv, err[-2000:])
    if code == 64:
        lines = [line for line in err.splitlines() if line.strip()]
        # one line; none when a bare group (`halfopen lab`) printed its help on stdout
        assert len(lines) == 1 and lines[0].startswith("halfopen: ") or not lines and out, \
            (argv, err[-2000:])
    return code, out, err
