"""The streamed doctor says what the doctor said before it streamed.

The goldens were recorded by record_goldens.py on the code that kept every
socket in a list (main f7860af); the doctor now reads a Tally instead. Every
recorded case and every generated table must give the same report, finding
for finding, and the same perfdata. One change since, by hand: a kill filter
names a bare IPv6 peer in brackets (`dst [2001:db8::5]`; unbracketed, the
filter read its last group as a port and refused it), and nginx evidence names
the configuration read, not `nginx -T` (which halfopen no longer runs); and
timeout-mismatch's keepalive cure comes from diagnose.keepalive_target (issue
22: the first probe and a dead peer's reset strictly inside the limit, so the
three keepalive sysctls, and info when the first probe already beats it):
the four timeout-mismatch goldens were re-recorded for that finding alone;
and dead-peer proposes TCP_USER_TIMEOUT and tcp_retries2 only where data is in
flight (retransmitting or Send-Q): its goldens re-recorded for that alone;
kernel log evidence says the log is host-wide (four goldens: that note alone);
a new rule, reset-on-close (issue 21's example of adding one): every golden's
`checked` gained its id and the five without host facts its "could not check"
finding, nothing else (re-recorded by a script that refused any other difference).
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
from halfopen.model.fixes import parse_filter  # noqa: E402

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


def test_every_filter_a_fix_proposes_parses():
    """A kill or keepalive fix's filter is one `halfopen fix` can run (a dead-peer kill
    once named a bare IPv6 peer, which the filter reads as address:port and refuses)."""
    filters = set()
    for name, *_ in ALL:
        with open(inputs.golden_path(name)) as f:
            for finding in json.load(f)["report"]["findings"]:
                filters |= {fix["params"]["filter"] for fix in finding["fixes"]
                            if "filter" in fix["params"]}
    assert any("[2001:db8::5]" in text for text in filters)
    for text in filters:
        parse_filter(text)  # raises on a filter the parser refuses
