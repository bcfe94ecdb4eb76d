"""The doctor's one live run: what to look at and the options in, the Report out.

`halfopen doctor` and `halfopen fix` (before it acts, and again to verify) call
examine(); nothing else wires the pieces. The order is the one the data needs:

    each rule's state (diagnose.registry.rule_states) in an empty Tally
    -> collect.doctor_input.take_live: the dump streams into it (no socket list
       kept), the host facts around it, the owners' identity read with their fds
    -> diagnose.report.diagnose: the rules, pure, on the Tally and the host facts;
       the findings' subjects say who they are about from what was read
       (diagnose.common.identify), so nothing reads /proc again after the rules.

The watch and the exporter sample through their own owner cache and call
diagnose() on each full sample (watch.findings): the same rules and identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from halfopen.records import record

from .collect import doctor_input
from .collect.netns import Namespace
from .diagnose import report
from .diagnose.context import Options
from .diagnose.tally import Tally
from .model.history import History
from .model.nginx import NginxConf
from .model.servers import ServerFacts
from .model.snapshot import Snapshot
from .model.socket import Socket

if TYPE_CHECKING:  # a run with a trace window made it: one without need not import it
    from .collect.trace_window import TraceWindow


@record(frozen=True)
class Look:
    """Where a live run looks: the namespaces (none: the caller's own), the counter
    window in seconds, nginx's main file when not the running master's."""

    namespaces: tuple[Namespace, ...] = ()
    window_s: float = 3.0
    nginx_config: str | None = None


@record
class Examined:
    """A live run's report and what it was made from."""

    report: report.Report
    snapshot: Snapshot  # its sockets list empty unless keep_sockets
    table: Tally  # the sockets as the rules read them (perfdata reads it too)
    nginx: NginxConf | None
    servers: ServerFacts


def examine(look: Look, options: Options = Options(), *,
        history: Callable[[Snapshot], History | None] | None = None,
        keep_sockets: bool = False, also: Callable[[Socket], None] | None = None,
        tracer: TraceWindow | None = None) -> Examined:
    """Read the system once and diagnose it.

    history: the History for the processes read (the watch's file), or None.
    keep_sockets: the snapshot keeps every socket (--save-snapshot writes them) and
    the rules tally that list; otherwise the dump streams into the rules' Tally.
    also: each socket goes to it as well as the dump streams (the plugin's focus;
    with keep_sockets the caller has the list instead).
    tracer: a trace window running meanwhile; its facts are the rules' evidence."""
    streamed = None if keep_sockets else report.new_tally(options)
    snap, nginx, note, servers = doctor_input.take_live(
        look.namespaces, look.window_s, nginx_config=look.nginx_config,
        sink=_both(streamed.add, also) if streamed is not None else None)
    trace = tracer.finish() if tracer is not None else None
    table = streamed if streamed is not None else report.tally_of(snap, options)
    found = report.diagnose(snap, options, history(snap) if history is not None else None,
                            nginx, note, table=table, trace=trace, servers=servers)
    return Examined(found, snap, table, nginx, servers)


def _both(first: Callable[[Socket], None], then: Callable[[Socket], None] | None
          ) -> Callable[[Socket], None]:
    if then is None:
        return first

    def both(s: Socket) -> None:
        first(s)
        then(s)
    return both
