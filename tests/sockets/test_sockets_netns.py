"""Network namespaces: --netns NAME, --netns-pid PID, --all-netns labels, bad names."""

from __future__ import annotations

import os

import pytest
from sockets_support import LOCAL4, Puppet, make_netns, remove_netns
from tests.helpers import halfopen_json, run_halfopen

from halfopen.collect import netns
from halfopen.errors import NamespaceError


def _keys(doc: dict, label: str | None = None) -> set[tuple]:
    return {(d["local_addr"], d["local_port"], d["peer_addr"], d["peer_port"])
            for d in doc["sockets"] if label is None or d["netns"] == label}


@pytest.fixture(scope="module")
def other():
    """A second named namespace with one listener, and an unnamed one (unshare -n)."""
    name = make_netns()
    named = anon = None
    try:
        named = Puppet("ho-other", name)
        (_fd, port) = named.ints("listen", LOCAL4)
        anon = Puppet("ho-anon", wrap=("unshare", "-n"))
        (_fd, anon_port) = anon.ints("listen", "0.0.0.0")
        yield {"name": name, "port": port, "anon": anon, "anon_port": anon_port}
    finally:
        for p in (named, anon):
            if p is not None:
                p.stop()
        remove_netns(name)


def test_netns_name_selects_only_that_namespace(zoo):
    doc = halfopen_json("sockets", "--netns", zoo.netns)
    assert _keys(doc) == {e.key for e in zoo.expected}
    assert {d["netns"] for d in doc["sockets"]} == {zoo.netns}


def test_netns_pid_finds_the_namespace_of_a_process(zoo):
    doc = halfopen_json("sockets", "-p", "--netns-pid", str(zoo.cli.pid))
    assert _keys(doc) == {e.key for e in zoo.expected}
    # labelled with the /run/netns name the namespace also has
    assert {d["netns"] for d in doc["sockets"]} == {zoo.netns}
    assert netns.of_pid(zoo.srv.pid).inode == netns.named(zoo.netns).inode


def test_all_netns_labels_every_socket(zoo, other):
    anon_inode = os.stat(f"/proc/{other['anon'].pid}/ns/net").st_ino
    # the machine may hold many other sockets (benchmarks): let the kernel filter
    ours = ["src", "198.18.0.0/15", "or", "src", "2001:2::/48", "or",
            "sport", "=", f":{other['anon_port']}"]
    doc = halfopen_json("sockets", "-p", "--all-netns", *ours)
    labels = {d["netns"] for d in doc["sockets"]}
    assert {zoo.netns, other["name"], f"net:[{anon_inode}]"} <= labels
    assert _keys(doc, zoo.netns) == {e.key for e in zoo.expected}
    assert _keys(doc, other["name"]) == {(LOCAL4, other["port"], "0.0.0.0", 0)}
    (anon,) = [d for d in doc["sockets"] if d["netns"] == f"net:[{anon_inode}]"]
    assert (anon["local_port"], anon["state"]) == (other["anon_port"], "listen")
    assert [o["pid"] for o in anon["owners"]] == [other["anon"].pid]


def test_all_netns_table_has_a_netns_column(zoo):
    out = run_halfopen("sockets", "--all-netns", "src", "198.18.0.0/15", "or", "src",
                       "2001:2::/48", check=True).stdout.splitlines()
    assert out[0].split()[0] == "Netns"
    assert sum(line.startswith(zoo.netns) for line in out) == len(zoo.expected)


def test_all_netns_summary_counts_ours_too(zoo):
    # other namespaces on this machine (other people's labs) may use the same
    # addresses, so only a lower bound holds here
    words = ["dst", "198.18.0.2", "or", "dst", "[2001:2::2]"]  # ss reads a bare v6 address's last part as a port
    summ = halfopen_json("sockets", "--all-netns", "--summary", *words)
    assert summ["by_state"]["syn_sent"] >= 2 and summ["by_state"]["syn_recv"] >= 2
    mine = halfopen_json("sockets", "--netns", zoo.netns, "--summary", *words)
    assert mine["by_state"] == {"syn_sent": 2, "syn_recv": 2}


@pytest.mark.parametrize("args,word", [
    (["--netns", "no-such-ns-xyz"], "no-such-ns-xyz"),
    (["--netns", "../etc"], "../etc"),
    (["--netns-pid", "999999999"], "999999999"),
    (["--netns", "a", "--all-netns"], "--all-netns"),
])
def test_unknown_or_conflicting_netns_is_usage_error(args, word):
    proc = run_halfopen("sockets", *args)
    assert proc.returncode == 64, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("halfopen: ") and word in lines[0], lines
    assert "Traceback" not in proc.stderr


def test_named_lists_what_exists(zoo):
    with pytest.raises(NamespaceError) as info:
        netns.named("no-such-ns-xyz")
    assert zoo.netns in str(info.value)


def test_entered_comes_back_home(zoo):
    home = os.stat("/proc/thread-self/ns/net").st_ino
    with netns.entered(netns.named(zoo.netns)):
        assert os.stat("/proc/thread-self/ns/net").st_ino == netns.named(zoo.netns).inode
    assert os.stat("/proc/thread-self/ns/net").st_ino == home
