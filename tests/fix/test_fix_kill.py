"""`halfopen kill`: real CLOSE_WAIT sockets of a real server destroyed; dry run; refusals."""

from __future__ import annotations

import errno
import json

from tests.helpers import sh


def ss_states(netns: str, port: int) -> list[str]:
    out = sh_out(netns, "ss", "-tanH", "sport", "=", f":{port}")
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def sh_out(netns: str, *cmd: str) -> str:
    return sh(*cmd, netns=netns).stdout


def test_kill_close_wait(netns, start_peer, run):
    peer = start_peer(3, close=True)
    assert ss_states(netns, peer.port) == ["CLOSE-WAIT"] * 3 + ["LISTEN"]
    words = ["state", "close-wait", "sport", "=", f":{peer.port}", "--netns", netns]

    code, out, _err = run("kill", *words)  # dry run
    assert code == 0
    assert out.count("would kill") == 3 and "dry run" in out
    assert ss_states(netns, peer.port) == ["CLOSE-WAIT"] * 3 + ["LISTEN"]

    code, out, _err = run("kill", *words, "--yes", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [s["result"] for s in doc["sockets"]] == ["killed"] * 3
    assert all(s["owners"][0]["pid"] == peer.pid for s in doc["sockets"])
    assert "fds stay open" in doc["note"]
    assert ss_states(netns, peer.port) == ["LISTEN"]  # the listener was not named
    assert peer.ask("send")["errnos"] == [errno.ECONNABORTED] * 3

    code, out, _err = run("kill", *words, "--yes")
    assert code == 0 and "nothing to kill" in out


def test_kill_refuses_empty_filter_and_listeners(netns, start_peer, run):
    peer = start_peer(1)
    code, _out, err = run("kill", "--netns", netns, "--yes")
    assert code == 64 and "needs a filter" in err
    code, _out, err = run("kill", "sport", "=", f":{peer.port}", "--netns", netns, "--yes")
    assert code == 64 and "listening" in err
    assert ss_states(netns, peer.port) == ["ESTAB", "LISTEN"]  # nothing was touched
    code, out, _err = run("kill", "sport", "=", f":{peer.port}", "--netns", netns, "--yes",
                          "--include-listeners")
    assert code == 0 and out.count("killed") >= 2
    assert ss_states(netns, peer.port) == []


def test_destroy_twice_is_already_gone(netns, start_peer):
    from halfopen.collect import netns as netns_mod
    from halfopen.fix import destroy, targets
    from halfopen.model import filter as filters

    peer = start_peer(1, close=True)
    space = netns_mod.named(netns)
    socks = targets.matching(filters.parse(["state", "close-wait"]), (space,))
    assert len(socks) == 1
    first = destroy.destroy(socks, {netns: space})
    second = destroy.destroy(socks, {netns: space})
    assert [o.result for o in first] == ["killed"]
    assert [o.result for o in second] == ["already gone"]
    assert second[0].errno == errno.ENOENT
    assert peer.pid
