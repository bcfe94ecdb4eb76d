"""fix.verify's verdicts from the findings of the doctor run again: the same rule about
the same subject gone is cured; still there, not-yet when the change acts over time,
else not-cured. Findings built as the doctor builds them (model records)."""

from __future__ import annotations

from halfopen.fix.actions.keepalive_action import KeepaliveSet
from halfopen.fix.plan import Step
from halfopen.fix.retrofit import Settings
from halfopen.fix.verify import CURED, NOT_CURED, NOT_YET, Verdict, verdicts
from halfopen.model.finding import Finding
from halfopen.model.identity import ProcessIdentity
from halfopen.model.subject import Subject


def finding(fid: str, **subject) -> Finding:
    return Finding(id=fid, severity="warning", cause="c", title="t", subject=Subject.from_dict(subject),
                   evidence=[], fixes=[], why="")


def step(fid: str, action: str, target: str, subject: dict, new=None, change=None) -> Step:
    return Step(fid, "t", action, target, "change", new=new, change=change,
                subject=Subject.from_dict(subject))


def test_each_verdict():
    ka = step("dead-peer", "keepalive", "pid 9 (redis) TCP sockets", {"netns": "host", "pid": 9},
              change=KeepaliveSet(ProcessIdentity(9, 100, "redis"), Settings(3, 1, 3), ()))
    kill = step("close-wait-leak", "kill", "state close-wait pid 7", {"netns": "host", "pid": 7})
    tuning = step("kernel-tuning", "sysctl", "net.ipv4.tcp_syncookies",
                  {"netns": "host", "sysctl": "net.ipv4.tcp_syncookies"}, new="1")
    after = [finding("dead-peer", netns="host", pid=9), finding("close-wait-leak", netns="host", pid=7),
             finding("kernel-tuning", netns="host")]  # the info finding: not the same subject
    got = verdicts([ka, kill, tuning, kill], ["set", "set", "set", "already set"], after)
    assert got == [Verdict(NOT_YET, 6), Verdict(NOT_CURED), Verdict(CURED), None]
    assert verdicts([kill], ["set"], [finding("close-wait-leak", netns="host", pid=8)]) == [Verdict(CURED)]
