"""Kernel log lines are the host's (issue 22): a line names a port, never a network
namespace, so it is pinned to a namespace's listener only as evidence beside that
namespace's own figures, and alone it is reported once, host-wide."""

from __future__ import annotations

import copy
import json
import os

from halfopen.diagnose.report import diagnose
from halfopen.model.snapshot import Snapshot

CASE = os.path.join(os.path.dirname(__file__), "cases", "syn-flood-many-sources.json")


def test_a_syn_flood_line_alone_is_not_pinned_to_the_namespaces_with_that_port():
    with open(CASE) as f:
        doc = json.load(f)["snapshot"]
    listener = next(s for s in doc["sockets"] if s["state"] == "listen")
    # two namespaces listen on 443 and hold no half-open handshake; the log says port 443
    doc = copy.deepcopy(doc)
    doc["namespaces"] = ["host", "blue"]
    doc["sockets"] = [listener, dict(listener, netns="blue", inode=listener["inode"] + 1,
                                     cookie=listener["cookie"] + 1)]
    quiet = dict(doc["host_facts"]["namespaces"][0],  # no cookie sent in the window either
                 rates={"window_s": 3.0, "delta": {"TcpExt.SyncookiesSent": 0}, "per_s": {}})
    doc["host_facts"]["namespaces"] = [quiet, dict(quiet, netns="blue")]
    report = diagnose(Snapshot.from_dict(doc))
    assert not [f for f in report.findings if f.id == "syn-flood"], \
        [(f.id, f.subject) for f in report.findings]
    (klog,) = [f for f in report.findings if f.id == "kernel-warning"]
    assert klog.subject.netns == "host" and klog.subject.port == 443
    note = next(e.note for e in klog.evidence if e.what == "last_line")
    assert "any of them" in note


def test_beside_a_namespace_s_own_figures_the_line_says_it_is_host_wide():
    with open(CASE) as f:
        report = diagnose(Snapshot.from_dict(json.load(f)["snapshot"]))
    (syn,) = [f for f in report.findings if f.id == "syn-flood"]
    line = next(e for e in syn.evidence if e.what == "kernel_log")
    assert "may come from any network namespace" in line.note
