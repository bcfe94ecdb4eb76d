"""`halfopen kill FILTER`: SOCK_DESTROY the sockets the filter names; dry run without --yes."""

from __future__ import annotations

import json
import sys

import click

from ..collect import netns
from ..errors import EXIT_CRITICAL, UsageError
from ..fix import destroy, safety, targets
from ..model import filter as filters
from ..model.text import shown
from .format import endpoint, table
from .options import filter_argument, namespace_options, resolve_namespaces

REMINDER = ("the owners' fds stay open until they call close(); their next read or write "
            "fails with ECONNABORTED (or reads EOF)")


@click.command(context_settings={"ignore_unknown_options": True})
@filter_argument
@click.option("--yes", is_flag=True, help="Really destroy them (without it: a dry run).")
@click.option("--include-listeners", is_flag=True, help="Allow LISTEN sockets in the match.")
@namespace_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def kill(filter_words: tuple[str, ...], yes: bool, include_listeners: bool,
         netns_name: str | None, netns_pid: int | None, all_netns: bool, as_json: bool) -> int:
    """Destroy the TCP sockets FILTER matches (SOCK_DESTROY, as `ss -K`).

    The kernel sends RST for ESTABLISHED and CLOSE_WAIT sockets and frees
    them; the owning process keeps its fd until it closes it. Sockets held
    by pid 1 or by halfopen are left alone unless the filter names the pid.

    \b
    Examples:
      halfopen kill state close-wait pid 812            # dry run
      halfopen kill state close-wait dport = :5432 --yes
    """
    flt = filters.parse(filter_words)
    for note in flt.notes:  # how a value was read (a port past 65535), before acting on it
        click.echo(f"halfopen: note: {note}", err=True)
    if flt.is_empty:
        raise UsageError("kill needs a filter: an empty one would name every socket "
                         "(e.g. `state close-wait pid 812`)")
    if flt.ambiguity:  # `a or b and c`: ss and its manual group it differently
        raise UsageError(f"ambiguous filter: {flt.ambiguity}; add parentheses before "
                         "destroying anything")
    spaces = resolve_namespaces(netns_name, netns_pid, all_netns) or (netns.current(),)
    found = targets.matching(flt, spaces)
    listeners = safety.listening(found)
    if listeners and not include_listeners:
        first = listeners[0]
        raise UsageError(f"the filter matches {len(listeners)} listening socket(s) "
                         f"({endpoint(first.local_addr, first.local_port)}); add "
                         "`exclude listening` to the filter, or --include-listeners")
    refused = safety.refused(found, flt)
    skipped = {id(s) for s, _r in refused}
    chosen = [s for s in found if id(s) not in skipped]
    if yes:
        outcomes = destroy.destroy(chosen, {ns.name: ns for ns in spaces})
    else:
        outcomes = [destroy.Outcome(s, "would kill") for s in chosen]
    outcomes += [destroy.Outcome(s, "left alone", reason=r) for s, r in refused]
    failed = [o for o in outcomes if o.result not in destroy.DONE + ("would kill", "left alone")]
    if as_json:
        json.dump({"schema": "halfopen.kill/1", "dry_run": not yes, "filter": flt.text,
                   "sockets": [o.to_dict() for o in outcomes],
                   "note": REMINDER}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _text(outcomes, yes, len(spaces) > 1)
    return EXIT_CRITICAL if failed else 0


def _text(outcomes: list[destroy.Outcome], yes: bool, show_netns: bool) -> None:
    if not outcomes:
        click.echo("no socket matches the filter: nothing to kill")
        return
    rows = []
    for o in outcomes:
        s = o.sock
        who = ",".join(f"{w.comm}({w.pid}) fd {w.fd}" for w in s.owners) or "-"
        row = [o.result, s.state_name, endpoint(s.local_addr, s.local_port),
               endpoint(s.peer_addr, s.peer_port), who]
        if show_netns:
            row.insert(1, s.netns)
        rows.append(row)
    header = ["result", "state", "local", "peer", "owner"]
    if show_netns:
        header.insert(1, "netns")
    click.echo(table(rows, header))
    for o in outcomes:
        if o.reason:
            click.echo(f"  {endpoint(o.sock.local_addr, o.sock.local_port)} -> "
                       f"{endpoint(o.sock.peer_addr, o.sock.peer_port)}: {o.result}: {shown(o.reason)}")
    would = sum(o.result == "would kill" for o in outcomes)
    if not yes:
        click.echo(f"dry run: {would} socket(s) would be destroyed; add --yes to do it")
    else:
        killed = sum(o.result == "killed" for o in outcomes)
        click.echo(f"{killed} socket(s) destroyed; {REMINDER}")
