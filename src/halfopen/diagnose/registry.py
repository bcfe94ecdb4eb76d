"""Every rule id (model.rules) with its seed cause and its check function, in report order."""

from __future__ import annotations

from collections.abc import Callable

from halfopen.records import record

from ..model.finding import Finding
from ..model.rules import CAUSES
from ..model.rules import RULE_IDS as RULE_IDS  # re-exported: one check per id, in its order
from ..model.subject import Subject
from . import closewait, deadpeer, kernel, listen, resets, resources, timeouts, timewait
from .context import Context, Options, Unavailable
from .tally import RuleState


@record(frozen=True)
class Rule:
    id: str
    cause: str
    check: Callable[[Context], list[Finding]]
    doc: str  # docs/rules/<id>.md
    # what the rule keeps of each socket as the dump streams (tally.RuleState), made
    # from the doctor's options; None: it reads only the shared figures
    state: Callable[[Options], RuleState | None] | None = None


def _rule(rid: str, check, state=None) -> Rule:
    return Rule(rid, CAUSES[rid], check, f"docs/rules/{rid}.md", state)


RULES: tuple[Rule, ...] = (
    _rule("close-wait-leak", closewait.check_close_wait, closewait.CloseWaitState),
    _rule("fd-leak", closewait.check_fd_leak),
    _rule("dead-peer", deadpeer.check_dead_peer, deadpeer.dead_peer_state),
    _rule("keepalive-off", deadpeer.check_keepalive_off, deadpeer.keepalive_off_state),
    _rule("timeout-mismatch", timeouts.check_timeouts, timeouts.flow_idle_state),
    _rule("syn-flood", listen.check_syn_flood),
    _rule("accept-queue-overflow", listen.check_accept_queue),
    _rule("fd-exhaustion", resources.check_fds),
    _rule("conntrack-exhaustion", resources.check_conntrack),
    _rule("tcp-memory-pressure", resources.check_tcp_memory),
    _rule("orphan-pressure", resources.check_orphans),
    _rule("memory-exhaustion", resources.check_memory),
    _rule("time-wait-pressure", timewait.check_time_wait),
    _rule("kernel-warning", kernel.check_kernel_log),
    _rule("kernel-tuning", kernel.check_tuning),
    _rule("reset-on-close", resets.check_reset_on_close),
)
BY_ID = {r.id: r for r in RULES}


def rule_states(options: Options) -> dict[str, RuleState]:
    """Each rule's own state for one dump, by rule id (the rules that keep one)."""
    made = {r.id: r.state(options) for r in RULES if r.state is not None}
    return {rid: state for rid, state in made.items() if state is not None}


def run(ctx: Context, only: tuple[str, ...] = ()) -> tuple[list[Finding], list[str], list[str]]:
    """Run the rules: (findings, checked ids, ids that could not be checked).

    A rule whose source is unavailable yields one "unknown" finding with the
    reason; the others still run.
    """
    findings: list[Finding] = []
    checked: list[str] = []
    unknown: list[str] = []
    for rule in RULES:
        if only and rule.id not in only:
            continue
        try:
            found = rule.check(ctx)
        except Unavailable as exc:
            unknown.append(rule.id)
            findings.append(Finding(
                id=rule.id, severity="unknown", cause=rule.cause,
                title=f"{rule.id}: could not check ({exc})", subject=Subject(),
                evidence=[], fixes=[], why=str(exc)))
            continue
        checked.append(rule.id)
        findings.extend(found)
    return findings, checked, unknown
