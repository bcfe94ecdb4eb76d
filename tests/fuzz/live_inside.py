"""Run inside the sandbox of test_fuzz_live.py (own pid, mount and network namespace).

Valid argv for the commands that read the live kernel, run in-process: the
sandbox's /proc shows only its own processes and its network namespace holds
only loopback, so a run is quick and nothing outside can be touched. Nothing
is applied: no --yes, --apply or --rollback.
"""

from __future__ import annotations

import os
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import values as v  # noqa: E402
from harness import FUZZ, check  # noqa: E402
from test_fuzz_live import EXAMPLES  # noqa: E402
from test_fuzz_options import FILTER_WORDS  # noqa: E402

ME = str(os.getpid())
OUT = os.environ.get("HALFOPEN_FUZZ_OUT", "/tmp")

FILTER = st.lists(st.sampled_from(FILTER_WORDS), max_size=5)
SMALL_INT = st.one_of(st.integers(1, 5000).map(str), st.sampled_from(v.BAD_INTS))


@st.composite
def live_argv(draw) -> list[str]:
    cmd = draw(st.sampled_from(["sockets", "kill", "keepalive", "watch"]))
    if cmd == "sockets":
        flags = draw(st.lists(st.sampled_from(["-p", "-i", "--json", "--jsonl", "--csv",
                                               "--summary"]), max_size=3, unique=True))
        source = draw(st.sampled_from([[], ["--source", "procfs"], ["--source", "sock_diag"]]))
        return ["sockets", *flags, *source, *draw(FILTER)]
    if cmd == "kill":  # a dry run: no --yes
        flags = draw(st.lists(st.sampled_from(["--json", "--include-listeners"]), unique=True))
        return ["kill", *flags, *draw(FILTER)]
    if cmd == "keepalive":  # our own process, a dry run
        opts = []
        for name in draw(st.lists(st.sampled_from(["--idle", "--interval", "--count",
                                                   "--user-timeout"]), unique=True)):
            opts += [name, draw(SMALL_INT)]
        flags = draw(st.lists(st.sampled_from(["--json", "--release"]), unique=True))
        return ["keepalive", "--pid", ME, *opts, *flags, *draw(FILTER)]
    record = draw(st.sampled_from([[], ["--record", os.path.join(OUT, "live.db")]]))
    return ["watch", "--once", "--no-doctor", "--interval", draw(v.durations()),
            "--window", draw(st.sampled_from(["5m", "1s", "0"])), *record]


def test_live_commands():
    @settings(FUZZ, max_examples=EXAMPLES)
    @given(live_argv())
    def one(argv: list[str]) -> None:
        check(argv)

    one()
