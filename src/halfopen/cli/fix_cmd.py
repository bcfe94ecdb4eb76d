"""`halfopen fix`: plan the doctor's automatic fixes, apply, persist, roll back."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .. import store
from ..diagnose import middlebox
from ..diagnose.context import Options
from ..doctor import Look, examine
from ..errors import EXIT_WARNING, UsageError
from ..fix import apply as applier
from ..fix import journal, plan, safety, verify
from ..fix import persist as persist_file
from ..fix.failures import PartialFailure
from ..model.finding import Finding
from ..model.text import shown
from . import complete
from .format import table
from .options import PATH, Seconds, namespace_options, resolve_namespaces
from .progress import progress

SCHEMA = "halfopen.fix/1"


@click.command()
@click.argument("finding_ids", nargs=-1, metavar="[FINDING_ID]...",
                shell_complete=complete.rule_ids)
@click.option("--apply", "do_apply", is_flag=True, help="Carry the plan out.")
@click.option("--persist", is_flag=True,
              help="Also write the host's sysctls to /etc/sysctl.d/60-halfopen.conf.")
@click.option("--rollback", is_flag=True, help="Restore every value the journal says we changed.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option("--findings", "findings_file", type=PATH, metavar="FILE",
              help="Take the findings from `halfopen doctor --json` output instead of "
                   "running the doctor.")
@click.option("--journal", "journal_path", type=PATH, metavar="PATH",
              help=f"Journal file [env {journal.ENV}; default {journal.DEFAULT_PATH}].")
@click.option("--sysctl-file", type=PATH, metavar="PATH",
              help=f"The --persist file [env {persist_file.ENV}; default {persist_file.DEFAULT_PATH}].")
@click.option("--window", type=Seconds(0, 3600), default=1.0, show_default=True,
              help="Seconds the doctor measures counter rates over.")
@click.option("--min-age", type=Seconds(), metavar="SECONDS",
              help="Passed to the doctor: override every age threshold.")
@click.option("--middlebox", "middleboxes", multiple=True, metavar="NAME|SECONDS",
              help="Passed to the doctor: a NAT/firewall/LB on the path. Repeatable.")
@click.option("--nginx-config", type=PATH, metavar="FILE",
              help="Passed to the doctor: nginx's configuration file.")
@namespace_options
def fix(finding_ids: tuple[str, ...], do_apply: bool, persist: bool, rollback: bool,
        as_json: bool, findings_file: str | None, journal_path: str | None,
        sysctl_file: str | None, window: float, min_age: float | None,
        middleboxes: tuple[str, ...], nginx_config: str | None, netns_name: str | None,
        netns_pid: int | None, all_netns: bool) -> int:
    """Plan the doctor's automatic fixes; apply them with --apply.

    Without --apply nothing changes: the plan shows each change as
    current -> new with the finding it answers, or "already set". Every
    change is journaled (time, old, new) so --rollback can restore it.
    Fixes halfopen cannot apply (configuration, code) are printed as text.

    \b
    Examples:
      halfopen fix                          # the plan
      halfopen fix keepalive-off --apply
      halfopen fix --apply --persist
      halfopen fix --rollback
    """
    jpath = journal_path or journal.default_path()
    if rollback:
        if do_apply or persist or finding_ids:
            raise UsageError("--rollback takes no finding ids, --apply or --persist")
        return _rollback(jpath, as_json)
    spaces = resolve_namespaces(netns_name, netns_pid, all_netns)
    names = {s.name for s in spaces} if spaces else None
    options = _doctor_options(findings_file is not None, min_age, middleboxes, nginx_config)
    findings = _findings(findings_file, spaces, window, options, nginx_config)
    findings, outside = safety.in_namespaces(findings, names)
    chosen, notes = plan.select(findings, finding_ids)
    notes += outside
    steps = plan.build(chosen, only_netns=names)
    spath = sysctl_file or persist_file.default_path()
    if persist:  # refuse a planted file or symlink before anything changes
        persist_file.check(spath)
    if not do_apply:
        _show_plan(steps, notes, persist and spath, as_json)
        return 0
    with journal.Journal(jpath) as jnl:
        try:
            done = applier.apply(steps, jnl)
            checked = _verify(steps, done, jnl, findings_file is None, spaces, window, options,
                              nginx_config)
            if persist:
                _persist(steps, spath, jnl, done)
        except applier.Failed as exc:
            _show_done(exc.done, steps, notes, jpath, as_json, failure=exc.reason)
            raise PartialFailure(f"{exc.reason}; the journal {jpath} holds what changed "
                                 "before it; `halfopen fix --rollback` restores it") from None
    if findings_file is not None and any(d.outcome == "set" for d in done):
        notes.append("not verified: the findings came from a file (--findings); run "
                     "`halfopen doctor` with the options that produced them")
    _show_done(done, steps, notes, jpath, as_json, checked=checked)
    return EXIT_WARNING if any(v is not None and v.verified == verify.NOT_CURED
                               for v in checked) else 0


def _doctor_options(from_file: bool, min_age: float | None, middleboxes: tuple[str, ...],
                    nginx_config: str | None) -> Options:
    """The options passed to the doctor (the plan's run and the verifying one); with
    --findings the doctor does not run, so they are refused rather than ignored."""
    if from_file and (min_age is not None or middleboxes or nginx_config):
        raise UsageError("--min-age, --middlebox and --nginx-config are the doctor's: drop "
                         "them with --findings")
    return Options(middleboxes=tuple(middlebox.parse(w) for w in middleboxes), min_age_s=min_age)


def _persist(steps: list[plan.Step], spath: str, jnl: journal.Journal,
             done: list[applier.Done]) -> None:
    """Write the host's sysctls to the --persist file (onto `done`). A failure after a
    change was set is applier.Failed, so what changed is shown with the reason."""
    try:
        done.append(applier.persist_steps(steps, spath, jnl))
    except journal.JournalError as exc:
        if not any(d.outcome == "set" for d in done):
            raise
        raise applier.Failed(str(exc), done) from None


def _verify(steps: list[plan.Step], done: list[applier.Done], jnl: journal.Journal, live_run: bool,
            spaces: tuple, window: float, options: Options, nginx_config: str | None
            ) -> list[verify.Verdict | None]:
    """Run the doctor again (same options, same namespaces) and judge each applied step
    (fix.verify); each verdict is journaled. None for steps not applied, and for all of
    them when the findings came from a file (the options that made them are unknown)."""
    if not live_run or not any(d.outcome == "set" for d in done):
        return [None] * len(done)
    after = _findings(None, spaces, window, options, nginx_config)
    checked = verify.verdicts(steps, [d.outcome for d in done], after)
    for step, verdict in zip(steps, checked):
        if verdict is not None:
            jnl.record("verify", target=step.target, netns=step.netns, finding=step.finding,
                       **verdict.to_dict())
    return checked + [None] * (len(done) - len(checked))


def _findings(path: str | None, spaces: tuple, window: float,
              options: Options = Options(), nginx_config: str | None = None) -> list[Finding]:
    if path is not None:
        return store.load_findings(path)
    what = f"sampling counters over a {window:g} s window" if window else "reading sockets"
    with progress(what, window or None):
        return examine(Look(spaces, window, nginx_config), options).report.findings


def _arrow(step: plan.Step) -> str:
    if step.status == "already set":
        return f"{step.current} (already set)"
    if step.status == "skipped":
        return "skipped: not the process or namespace diagnosed"
    if step.current is None and step.new is None:
        return "-"
    return f"{step.current} -> {step.new}"


def _show_plan(steps: list[plan.Step], notes: list[str], persist_path: str | None | bool,
               as_json: bool) -> None:
    if as_json:
        doc: dict[str, Any] = {"schema": SCHEMA, "mode": "plan",
                               "steps": [s.to_dict() for s in steps], "notes": notes}
        if persist_path:
            doc["persist"] = persist_path
        _dump(doc)
        return
    for note in notes:
        click.echo(shown(note))
    auto = [s for s in steps if s.status != "manual"]
    if not steps:
        click.echo("nothing to fix: no finding carries a fix")
        return
    if auto:
        rows = [[s.finding, s.action, s.target, s.netns, _arrow(s)] for s in auto]
        click.echo(table(rows, ["finding", "action", "target", "netns", "current -> new"]))
        for s in auto:
            if s.note:
                click.echo(f"  {shown(s.target)}: {shown(s.note)}")
        changes = sum(s.status == "change" for s in auto)
        skipped = sum(s.status == "skipped" for s in auto)
        click.echo(f"plan: {changes} change(s), {len(auto) - changes - skipped} already set"
                   + (f", {skipped} skipped" if skipped else "")
                   + "; nothing was changed (add --apply)")
        if persist_path:
            click.echo(f"--persist would also write the host's sysctls to {shown(str(persist_path))}")
    _show_manual(steps)


def _show_manual(steps: list[plan.Step]) -> None:
    manual = [s for s in steps if s.status == "manual" or s.text]
    if not manual:
        return
    click.echo("by hand (halfopen does not apply these, or not all of them):")
    for s in manual:  # targets, notes and snippets may name a process or a config path
        where = f" {shown(s.target)}" if s.target else ""
        click.echo(f"  [{shown(s.finding)}] {shown(s.action)}{where}"
                   + (f": {shown(s.note)}" if s.note else ""))
        for line in (s.text or "").splitlines():
            click.echo(f"      {shown(line)}")


def _show_done(done: list[applier.Done], steps: list[plan.Step], notes: list[str],
               jpath: str, as_json: bool, failure: str = "",
               checked: list[verify.Verdict | None] | None = None) -> None:
    checked = checked or [None] * len(done)
    if as_json:
        _dump({"schema": SCHEMA, "mode": "apply", "journal": jpath,
               "results": [dict(d.to_dict(), **(v.to_dict() if v else {}))
                           for d, v in zip(done, checked)],
               "failure": failure or None,
               "manual": [s.to_dict() for s in steps if s.status == "manual"], "notes": notes})
        return
    for note in notes:
        click.echo(shown(note))
    results = [(d, v) for d, v in zip(done, checked) if d.outcome != "manual"]
    if results:
        click.echo(table([[d.target, d.outcome, d.detail, _verified(v)] for d, v in results],
                         ["target", "result", "detail", "verified"]))
    _show_manual(steps)
    if not failure and any(d.outcome == "set" for d in done):
        click.echo(f"journal: {shown(jpath)} (`halfopen fix --rollback` restores)")


def _verified(v: verify.Verdict | None) -> str:
    if v is None:
        return ""
    if v.verified == verify.NOT_YET:
        return f"not yet: shows within {v.settles_in_s:g}s (run the doctor then)"
    return v.verified


def _rollback(jpath: str, as_json: bool) -> int:
    with journal.Journal(jpath) as jnl:
        done = applier.rollback(jpath, jnl)
    failed = [d for d in done if d.outcome == "failed"]
    left = [d for d in done if d.outcome == "left alone"]
    if as_json:
        _dump({"schema": SCHEMA, "mode": "rollback", "journal": jpath,
               "results": [d.to_dict() for d in done]})
    elif not done:
        click.echo(f"nothing to roll back: every change in {shown(jpath)} is already undone")
    else:
        click.echo(table([[d.target, d.outcome, d.detail] for d in done],
                         ["target", "result", "detail"]))
    if failed:
        raise PartialFailure(f"{len(failed)} change(s) could not be restored: "
                             f"{failed[0].target}: {failed[0].detail}")
    return EXIT_WARNING if left else 0


def _dump(doc: dict) -> None:
    json.dump(doc, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
