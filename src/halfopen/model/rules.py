"""The rule ids (docs/design.md "Rule ids") and their seed causes, in report order.

Stable: a new rule adds an id, never renames one. diagnose.registry pairs
each id with its check; `fix FINDING_ID` accepts exactly these.
"""

from __future__ import annotations

CAUSES: dict[str, str] = {
    "close-wait-leak": "application does not close",
    "fd-leak": "application does not close",
    "dead-peer": "client vanished",
    "keepalive-off": "client vanished",
    "timeout-mismatch": "middlebox timing out",
    "syn-flood": "SYN flood",
    "accept-queue-overflow": "resource exhaustion",
    "fd-exhaustion": "resource exhaustion",
    "conntrack-exhaustion": "resource exhaustion",
    "tcp-memory-pressure": "resource exhaustion",
    "orphan-pressure": "resource exhaustion",
    "memory-exhaustion": "resource exhaustion",
    "time-wait-pressure": "after the fix: TIME_WAIT",
    "kernel-warning": "kernel",
    "kernel-tuning": "kernel",
    "reset-on-close": "application resets its connections",
}
RULE_IDS: tuple[str, ...] = tuple(CAUSES)
