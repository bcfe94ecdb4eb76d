"""halfopen's filters select exactly the sockets real ss selects (filter_conformance.py).

One socket set in a namespace of its own; the corpus (iproute2's ssfilter.t,
the ss(8) examples, one case per item of issue 12, and generated nestings
with a fixed seed) runs through `ss -Htan` and `halfopen sockets --json`, on
sock_diag and on /proc. Every expression must agree, or be a difference
docs/filter.md lists (SS_BUGS, words /proc cannot answer); every expression
ss rejects must be refused with exit 64.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil

import filter_conformance as fc
import pytest
from sockets_support import run
from tests.helpers import run_halfopen


@pytest.fixture(scope="module")
def socket_set():
    if os.geteuid() != 0 or shutil.which("ss") is None:
        pytest.skip("needs root (namespaces) and iproute2's ss")
    ns = fc.make_namespace()
    sockets = None
    try:
        sockets = fc.build(ns)
        yield sockets
    finally:
        if sockets is not None:
            sockets.close()
        fc.remove_namespace(ns)


def test_the_set_holds_every_state_ss_can_show(socket_set):
    _code, rows, _err = fc.run_halfopen(socket_set.netns, "")
    states = set(rows.values())
    assert states >= {"listen", "established", "syn_sent", "syn_recv", "fin_wait1",
                      "fin_wait2", "time_wait", "close_wait", "last_ack", "closing"}, states
    ports = {k[1] for k in rows} | {k[3] for k in rows}
    assert ports >= set(fc.BOUNDARY)
    addrs = {k[0] for k in rows}
    want = {fc.A4, fc.B4, fc.A6, fc.B6, fc.LL, "127.0.0.1", "::1", f"::ffff:{fc.A4}"}
    assert {str(ipaddress.ip_address(a)) for a in want} <= addrs, addrs


def test_corpus_agrees_with_ss(socket_set):
    outcomes = fc.measure(socket_set, fc.corpus())
    for source in ("auto", "procfs"):
        print(fc.summary(outcomes, source))
    wrong = [f"[{o.source}] {o.expr!r}: {o.detail}" for o in outcomes if o.verdict == "differ"]
    assert not wrong, f"{len(wrong)} differ:\n" + "\n".join(wrong[:30])
    mine = [o for o in outcomes if o.source == "auto"]
    # the corpus is not vacuous: most expressions select some but not every socket
    sizes = [int(o.detail.split()[0]) for o in mine if o.verdict == "same"]
    total = len(fc.run_halfopen(socket_set.netns, "")[1])
    assert sum(0 < n < total for n in sizes) > len(mine) // 2
    assert sum(o.verdict == "both-rejected" for o in mine) >= 20


@pytest.mark.parametrize("expr", [
    "sport = :1 or sport = :1024 and dport = :49153", "state established state listening",
    "sport = 026", "dst 2001:2::1:49152", "dev v0", "fwmark 0x10/0x10", "autobound",
    "src 198.18/15", "src localhost", "sport = inet6::1024", "src 1.2.3.256",
])
def test_the_installed_cli_gives_the_same_answer(socket_set, expr):
    """The corpus runs main() in-process for speed; a few run the real CLI."""
    proc = run_halfopen("sockets", "--json", "--netns", socket_set.netns, "--", *expr.split(),
                        timeout=20)
    code, rows, _err = fc.run_halfopen(socket_set.netns, expr)
    assert proc.returncode == code
    if code == 0:
        got = {(str(ipaddress.ip_address(s["local_addr"])), s["local_port"],
                str(ipaddress.ip_address(s["peer_addr"])), s["peer_port"])
               for s in json.loads(proc.stdout)["sockets"]}
        assert got == set(rows)
    else:
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def _cgroup2_mounts() -> int:
    with open("/proc/self/mounts") as f:
        return sum(line.split()[2] == "cgroup2" for line in f if len(line.split()) > 2)


@pytest.mark.parametrize("template", ["cgroup {cg}", "not cgroup {cg} and src 198.18.0.1",
                                      "cgroup {cg} or sport = :1"])
def test_cgroup_works_under_ip_netns_exec(socket_set, template):
    """`ip netns exec` mounts a fresh /sys, hiding the cgroup2 mount: ss then refuses
    every `cgroup` word; halfopen mounts cgroup2 privately (kernel.cgroupfs) and
    selects what ss selects when entered with the network namespace alone."""
    if not socket_set.cgroup:
        pytest.skip("no cgroup2 mount on this host")
    ns, expr = socket_set.netns, template.format(cg=socket_set.cgroup)
    inside = run("ip", "netns", "exec", ns, "cat", "/proc/self/mounts").stdout
    if any(line.split()[2:3] == ["cgroup2"] for line in inside.splitlines()):
        pytest.skip("this ip netns exec keeps a cgroup2 mount: nothing to find")
    before = _cgroup2_mounts()
    ss_code, ss_rows, _ = fc.run_ss(ns, expr)  # nsenter --net: this /sys, its cgroup2
    assert ss_code == 0
    if template == "cgroup {cg}":
        assert len(ss_rows) == 3  # the child's listener, client and accepted socket
    proc = run_halfopen("sockets", "--json", "--", *expr.split(), netns=ns, timeout=20)
    assert proc.returncode == 0, proc.stderr
    got = {(str(ipaddress.ip_address(s["local_addr"])), s["local_port"],
            str(ipaddress.ip_address(s["peer_addr"])), s["peer_port"])
           for s in json.loads(proc.stdout)["sockets"]}
    assert got == set(ss_rows)
    assert _cgroup2_mounts() == before  # the private mount did not leak out
    # ss itself under ip netns exec (iproute2 6.1: "Failed to find cgroup2 mount"),
    # which is why the comparison above enters the network namespace alone
    plain = run("ip", "netns", "exec", ns, "ss", "-Htan", "--", *expr.split(), check=False)
    if plain.returncode:
        assert "cgroup" in plain.stderr
    else:  # an ss that finds the hierarchy must agree as well
        assert len(plain.stdout.splitlines()) == len(got)
