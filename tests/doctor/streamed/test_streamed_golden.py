"""The streamed doctor says what the doctor said before it streamed.

The goldens were recorded by record_goldens.py on the code that kept every
socket in a list (main f7860af); the doctor now reads a Tally instead. Every
recorded case and every generated table must give the same report, finding
for finding, and the same perfdata.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import streamed_inputs as inputs  # noqa: E402

from halfopen.diagnose.perfdata import perfdata  # noqa: E402
from halfopen.diagnose.report import diagnose, new_tally  # noqa: E402

ALL = list(inputs.inputs())


@pytest.mark.parametrize("name,snap,options,nginx", ALL, ids=[a[0] for a in ALL])
def test_report_equals_the_golden(name, snap, options, nginx):
    with open(inputs.golden_path(name)) as f:
        want = json.load(f)
    # fed one socket at a time, as the live dump feeds it, then the snapshot's list dropped
    table = new_tally(options)
    for s in snap.sockets:
        table.add(s)
    perf = [p.text() for p in perfdata(snap, table)]
    snap.sockets = []
    report = diagnose(snap, options, nginx=nginx, table=table)
    got = json.loads(json.dumps({"report": report.to_dict(), "perfdata": perf}))
    assert got["report"]["findings"] == want["report"]["findings"]
    assert got == want


def test_the_goldens_cover_the_rules():
    """The inputs exercise the socket rules at more than one severity (not an empty diff)."""
    seen = set()
    for name, *_ in ALL:
        with open(inputs.golden_path(name)) as f:
            for finding in json.load(f)["report"]["findings"]:
                seen.add((finding["id"], finding["severity"]))
    for rid in ("close-wait-leak", "dead-peer", "keepalive-off", "syn-flood",
                "accept-queue-overflow", "time-wait-pressure", "orphan-pressure",
                "tcp-memory-pressure", "timeout-mismatch"):
        assert {sev for r, sev in seen if r == rid} - {"unknown"}, rid
