"""A namespace deleted between listing and reading is a note; the others are still read."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests.helpers import make_netns, remove_netns, sh

from halfopen.collect import netns, sockets, take
from halfopen.diagnose import report
from halfopen.errors import NamespaceError

pytestmark = pytest.mark.netns


def test_vanished_namespace_becomes_a_note_and_the_others_are_read():
    keep, gone = make_netns("hoV"), make_netns("hoV")
    listener = subprocess.Popen(["ip", "netns", "exec", keep, sys.executable, "-c",
                                 "import socket, sys, time\n"
                                 "s = socket.socket(); s.bind(('127.0.0.1', 4471)); s.listen()\n"
                                 "print('ready', flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        spaces = (netns.named(keep), netns.named(gone))
        sh("ip", "netns", "del", gone)  # after it was listed, before it is read
        found = sockets.collect(sockets.Query(namespaces=spaces))
        socks = list(found.sockets)
        assert any(s.netns == keep and s.local_port == 4471 for s in socks)
        assert not any(s.netns == gone for s in socks)
        assert any(f"network namespace {gone} vanished" in n for n in found.notes), found.notes
        # The doctor's full snapshot too: host facts of the gone one are "unavailable".
        snap = take.take_full(sockets.Query(tcp_info=True, owners=True, namespaces=spaces),
                                  window=0)
        assert any(s.netns == keep and s.local_port == 4471 for s in snap.sockets)
        rep = report.diagnose(snap)
        assert rep.checked
    finally:
        listener.kill()
        listener.wait()
        remove_netns(keep)
        remove_netns(gone)


def test_one_named_namespace_that_is_gone_is_a_usage_error():
    gone = make_netns("hoV")
    space = netns.named(gone)
    sh("ip", "netns", "del", gone)
    with pytest.raises(NamespaceError, match=f"network namespace {gone} is gone"):
        list(sockets.collect(sockets.Query(namespaces=(space,))).sockets)
