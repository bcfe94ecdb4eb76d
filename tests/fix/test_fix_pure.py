"""The pure parts of the fix piece: value checks, limit plans, file parsing, journal."""

from __future__ import annotations

import pytest

from halfopen.errors import UsageError
from halfopen.fix import journal, rlimit, sysctl


def test_sysctl_check():
    assert sysctl.check("net.ipv4.ip_local_port_range", "1024\t65000\n") == "1024 65000"
    assert sysctl.check("net.ipv4.ip_local_port_range", [1024, 65000]) == "1024 65000"
    assert sysctl.check("net.core.somaxconn", 4096) == "4096"
    for key, value in (("net.ipv4.tcp_keepalive_time", "0"), ("net.ipv4.tcp_syncookies", "3"),
                       ("net.ipv4.tcp_keepalive_time", "abc"), ("net.core.somaxconn", "1 2"),
                       ("net.ipv4.ip_local_port_range", "60000 1024"), ("vm.swappiness", "1")):
        with pytest.raises(UsageError):
            sysctl.check(key, value)


def test_rlimit_plan_never_lowers():
    current = rlimit.Limits(8192, 8192)
    assert rlimit.plan(current, 1024, None, False, 1 << 20) == (current, "")
    new, note = rlimit.plan(rlimit.Limits(1024, 4096), 65536, None, True, 1 << 20)
    assert new == rlimit.Limits(65536, 65536) and note == ""
    new, note = rlimit.plan(rlimit.Limits(1024, 4096), 1 << 21, None, True, 1 << 20)
    assert new.hard == 1 << 20 and "nr_open" in note


def test_journal_pending_newest_first(tmp_path):
    path = str(tmp_path / "j.jsonl")
    with journal.Journal(path) as j:
        a = j.record("sysctl", target="a", old="1", new="2")
        b = j.record("sysctl", target="b", old="1", new="2")
        j.record("undo", undoes=a["id"], target="a", outcome="restored")
    assert [e["target"] for e in journal.pending(path)] == ["b"]
    assert b["time"] and b["id"].endswith(":2")
    (tmp_path / "j.jsonl").write_text("{broken\n")
    with pytest.raises(UsageError, match=r"j.jsonl:1"):
        journal.pending(path)


def test_journal_unwritable_stops_early(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(journal.JournalError, match="cannot write"):
        journal.Journal(str(blocker / "journal.jsonl")).open()


def _sock(pid: int):
    from halfopen.model.socket import Owner, Socket
    return Socket(4, 8, "127.0.0.1", 80, "127.0.0.1", 5000, 0, 0, 0, 0, 0, 0, 1, 1,
                  owners=(Owner(pid, "x", 3),))


def test_kill_leaves_init_and_itself_alone_unless_named():
    import os

    from halfopen.fix import safety
    from halfopen.model import filter as filters

    socks = [_sock(1), _sock(os.getpid()), _sock(4242)]
    refused = safety.refused(socks, filters.parse(["state", "close-wait"]))
    assert [s.owners[0].pid for s, _r in refused] == [1, os.getpid()]
    assert "pid 1" in refused[0][1]
    assert [s.owners[0].pid for s, _r in
            safety.refused(socks, filters.parse(["pid", "1"]))] == [os.getpid()]
    assert len(safety.refused(socks, filters.parse(["not", "pid", "1"]))) == 2


def test_destroy_answers():
    import errno

    from halfopen.fix import destroy

    sock = _sock(4242)
    assert destroy.outcome(sock, 0).result == "killed"
    assert destroy.outcome(sock, errno.ENOENT).result == "already gone"
    assert destroy.outcome(sock, errno.ESTALE).result == "already gone"
    assert "CAP_NET_ADMIN" in destroy.outcome(sock, errno.EPERM).reason
    assert "CONFIG_INET_DIAG_DESTROY" in destroy.outcome(sock, errno.EOPNOTSUPP).reason
    assert destroy.outcome(sock, errno.EINVAL).result == "failed"
