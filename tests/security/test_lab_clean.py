"""`lab clean` removes only what its state file records (issue 9, item 4).

The old clean SIGKILLed every process in any `ho-*` namespace. Here a foreign
`ho-xyz*` namespace with a sleeping process, and a recorded name whose
namespace was deleted and recreated by someone else, both survive; the
namespace the record names by cookie is removed. A temporary state directory
keeps other runs' records (on a shared machine) out of it.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
import uuid

from tests.helpers import remove_netns, sh

from halfopen.collect import netns as netns_mod
from halfopen.lab import runner
from halfopen.lab.state import StateFile


def _sleeper(ns: str) -> subprocess.Popen:
    """`sleep` inside `ns`, returned once it runs there (ip netns exec has exec'ed)."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"])
    for _ in range(500):
        try:
            with open(f"/proc/{p.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    return p
        except FileNotFoundError:
            break
        time.sleep(0.01)
    raise AssertionError(f"sleep in {ns} did not start")


def test_clean_leaves_what_it_did_not_create(tmp_path):
    tag = uuid.uuid4().hex[:6]
    foreign, recreated, ours = f"ho-xyz{tag}", f"ho-{tag}-srv", f"ho-{tag}-cli"
    sleepers = []
    try:
        for name in (foreign, recreated, ours):
            sh("ip", "netns", "add", name)
        state = StateFile(str(tmp_path / "lab"))
        record = state.run(tag)
        record.begin("leaky-server")
        for name in (recreated, ours):
            record.add_netns(name)
            space = netns_mod.named(name)
            record.mark_netns(name, space.inode, netns_mod.cookie(space))
        with state.edit() as data:  # the run crashed: its owner is gone
            data["runs"][tag]["owner"], data["runs"][tag]["owner_start"] = 0, None
        sh("ip", "netns", "del", recreated)
        sh("ip", "netns", "add", recreated)  # someone else's now, under the recorded name
        sleepers = [_sleeper(foreign), _sleeper(recreated), _sleeper(ours)]

        out = io.StringIO()
        lines = runner.clean(out=out, state=state)

        assert f"netns {ours}" in lines
        assert ours not in netns_mod.list_named()
        assert any(x.startswith(f"left alone netns {foreign}: no lab run recorded it")
                   for x in lines), lines
        assert any(x.startswith(f"left alone netns {recreated}: the namespace with that name "
                                "is not the one the run created") for x in lines), lines
        assert {foreign, recreated} <= set(netns_mod.list_named())
        assert sleepers[0].poll() is None and sleepers[1].poll() is None  # never signalled
        assert sleepers[2].wait(timeout=10) != 0  # the recorded namespace's process was ended
        assert tag not in state.read()["runs"]
    finally:
        for p in sleepers:
            p.kill()
            p.wait(timeout=10)
        for name in (foreign, recreated, ours):
            if os.path.exists(f"/run/netns/{name}"):
                remove_netns(name)
