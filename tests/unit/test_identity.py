"""model.identity: what a finding recorded of a process and a namespace, carried by the fix records."""

from __future__ import annotations

from halfopen.model import fixes, identity
from halfopen.model.subject import Subject


def test_fix_records_carry_the_identity_the_finding_recorded():
    subject = Subject("blue", 812, "nginx", start_time=98123, netns_inode=4026532000,
                      netns_cookie=7)
    ka = fixes.change("keepalive", {"idle": 30, "filter": "dport = :5432"}, subject)
    assert isinstance(ka, fixes.KeepaliveChange)
    assert ka.process == identity.ProcessIdentity(812, 98123, "nginx")
    assert ka.filter.text == "dport = :5432" and ka.filter.expr is not None
    kill = fixes.change("kill", {"filter": "state close-wait"}, subject)
    assert isinstance(kill, fixes.KillChange)
    assert kill.netns == identity.NetnsIdentity("blue", 4026532000, 7)
    # a fix about another namespace than the subject's recorded no identity for it
    other = fixes.change("kill", {"filter": "state close-wait", "netns": "red"}, subject)
    assert isinstance(other, fixes.KillChange) and other.netns == identity.NetnsIdentity("red")
    assert other.params() == {"filter": "state close-wait", "netns": "red"}
