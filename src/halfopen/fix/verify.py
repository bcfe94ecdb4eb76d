"""After apply: did the change cure what it answered?

The doctor runs again (the same options, on the same namespaces) and each
applied step ends as:

    cured       the finding it answers is gone
    not-yet     the finding is still there, but the change acts over time:
                keepalive finds a dead peer only after idle + interval x
                count, a new tcp_retries2 only on the next retransmission
                backoff; `settles_in_s` says when to look again
    not-cured   the finding is still there and the change should already
                show (a kill, a raised limit, a sysctl the rule reads)

"The same finding" is the same rule about the same subject: its namespace,
process, port, middlebox, peer, side and sysctl, as the finding recorded them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional

from halfopen.records import record

from ..model.finding import Finding
from ..model.subject import Subject
from .actions import FIXES, Step

CURED, NOT_YET, NOT_CURED = "cured", "not-yet", "not-cured"
SUBJECT_KEYS = ("netns", "pid", "port", "middlebox", "peer", "direction", "sysctl")


@record(frozen=True)
class Verdict:
    verified: str  # CURED, NOT_YET or NOT_CURED
    settles_in_s: Optional[float] = None  # NOT_YET: when the change can show

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"verified": self.verified}
        if self.settles_in_s is not None:
            d["settles_in_s"] = self.settles_in_s
        return d


def settles_in_s(step: Step) -> float:
    """Seconds before an applied step can show in the sockets the rule reads; 0 when
    it shows at once. Each action knows its own (fix.actions).

    >>> settles_in_s(Step("dead-peer", "", "sysctl", "net.ipv4.tcp_retries2", "change", new="8"))
    102.2
    >>> settles_in_s(Step("kernel-tuning", "", "sysctl", "net.ipv4.tcp_retries2", "change", new="8"))
    0
    """
    action = FIXES.get(step.action)
    return action.settles_in_s(step) if action is not None else 0


def same_problem(subject: Subject, finding: Finding) -> bool:
    got = finding.subject
    return all(getattr(subject, k) == getattr(got, k) for k in SUBJECT_KEYS
               if getattr(subject, k) is not None)


def verdicts(steps: Iterable[Step], outcomes: Iterable[str], after: list[Finding]
             ) -> list[Optional[Verdict]]:
    """One verdict per step whose outcome was "set"; None for the others."""
    out: list[Optional[Verdict]] = []
    for step, outcome in zip(steps, outcomes):
        if outcome != "set":
            out.append(None)
            continue
        still = any(f.id == step.finding and same_problem(step.subject, f) for f in after)
        if not still:
            out.append(Verdict(CURED))
            continue
        wait = settles_in_s(step)
        out.append(Verdict(NOT_YET, wait) if wait > 0 else Verdict(NOT_CURED))
    return out
