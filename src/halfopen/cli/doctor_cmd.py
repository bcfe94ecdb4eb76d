"""`halfopen doctor`: name the cause of half-open and exhaustion problems."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from .. import __version__, fsio, store
from ..diagnose import middlebox, ranges
from ..diagnose import report as rep
from ..diagnose.context import Options
from ..diagnose.tally import Tally
from ..doctor import Look, examine
from ..errors import EXIT_UNKNOWN, HalfopenError, UsageError
from ..model import file_text
from ..model.history import History
from ..model.snapshot import Snapshot
from ..model.socket import Socket
from . import complete, doctor_out
from .options import PATH, PID, PORT, Seconds, namespace_options, resolve_namespaces
from .progress import progress

if TYPE_CHECKING:  # imported where used: --trace and --history pay for them, not every run
    from ..collect.trace_window import TraceWindow


class TimedOut(HalfopenError):
    """--timeout expired (exit 3: could not check)."""


class _Expired(BaseException):
    """Raised by the SIGALRM handler. Not an Exception: the collectors record an
    Exception from a source as "unavailable" and carry on, and the deadline must stop
    them; deadline() turns it into TimedOut once it is out of them."""


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Stop the work after `seconds` (SIGALRM via setitimer, main thread): a read of
    /proc or a netlink dump that hangs is interrupted and the check says UNKNOWN."""
    if not seconds:
        yield
        return

    def expired(_signum: int, _frame: object) -> None:
        raise _Expired()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Expired:
        raise TimedOut(f"timed out after {seconds:g} s (--timeout)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class PluginCommand(click.Command):
    """With --nagios, every way of failing is the plugin's UNKNOWN: one status line on
    stdout and exit 3 - a usage error too, which exits 64 elsewhere (Nagios reads 1 and
    2 as alarms and anything above 3 as UNKNOWN only by accident), and an internal error."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, list(args), parent, **extra)
        except click.UsageError as exc:
            if "--nagios" in args:
                _unknown(f"usage: {exc.format_message()}")
            raise

    def invoke(self, ctx: click.Context):
        if not ctx.params.get("nagios"):
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except click.UsageError as exc:
            _unknown(f"usage: {exc.format_message()}")
        except HalfopenError as exc:
            _unknown(str(exc))
        except Exception as exc:  # noqa: BLE001 - a plugin says UNKNOWN in one line, not a traceback
            root = ctx.find_root()
            if root.params.get("debug"):
                raise
            _unknown(f"internal error: {type(exc).__name__}: {exc} (run with --debug)")


def _unknown(message: str) -> None:
    """Print the UNKNOWN status line and leave with exit 3 (click.exceptions.Exit)."""
    click.echo(doctor_out.nagios_line("unknown", message))
    sys.stdout.flush()
    raise click.exceptions.Exit(EXIT_UNKNOWN)


@contextmanager
def traced(seconds: float | None, port: int | None, pid: int | None) -> Iterator[TraceWindow | None]:
    """A trace window running while the doctor reads (None without --trace): its
    instance is removed on any way out, SIGTERM included (as Ctrl-C)."""
    if not seconds:
        yield None
        return

    def term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    from ..collect.trace_window import TraceWindow  # noqa: PLC0415 - only --trace pays

    previous = signal.signal(signal.SIGTERM, term)
    window = TraceWindow.start(seconds, port, pid)
    try:
        yield window
    finally:
        window.stop()
        signal.signal(signal.SIGTERM, previous)


def _middleboxes(words: tuple[str, ...], file: str | None) -> tuple[middlebox.Middlebox, ...]:
    found = [middlebox.parse(w) for w in words]
    if file is not None:
        text = fsio.read_text(file, "--middlebox-file", file_text.MiB)
        found += middlebox.parse_file(text, file)
    return tuple(found)


@click.command(cls=PluginCommand)
@click.option("--pid", type=PID, metavar="PID", help="Focus on one process (and host-wide findings).")
@click.option("--port", type=PORT, metavar="PORT", help="Focus on one port (and host-wide findings).")
@click.option("--container", metavar="NAME|ID",
              help="Focus on one container or pod: its name, pod, NAMESPACE/POD or id (prefix).")
@click.option("--window", type=Seconds(0, 3600), default=3.0, show_default=True,
              metavar="SECONDS", help="Sample counters twice this far apart (0: one sample, no rates).")
@click.option("--trace", "trace_s", type=Seconds(0.1, 3600), metavar="SECONDS",
              help="Also read the kernel's connection-end events (tracefs) for SECONDS, in "
                   "parallel with --window: FINs and close() calls, resets, give-ups as evidence.")
@click.option("--middlebox", "middleboxes", multiple=True, metavar="NAME|SECONDS",
              shell_complete=complete.middlebox_presets,
              help=f"A NAT/firewall/LB on the path: {', '.join(middlebox.PRESETS)} or an idle "
                   "timeout in seconds. Repeatable.")
@click.option("--middlebox-file", type=PATH, metavar="FILE",
              help="Middleboxes, one per line: PRESET | SECONDS | NAME SECONDS [flow|proxy].")
@click.option("--json", "as_json", is_flag=True, help="The halfopen.doctor/1 JSON document.")
@click.option("-v", "--verbose", is_flag=True, help="Evidence, every fix, why, and info findings.")
@namespace_options
@click.option("--snapshot", "snapshot_file", type=PATH, metavar="FILE",
              help="Diagnose a saved snapshot instead of this host (no live reads).")
@click.option("--save-snapshot", type=PATH, metavar="FILE", help="Also save what was read, for later --snapshot.")
@click.option("--history", "history_file", type=PATH, metavar="FILE.db",
              help="A `halfopen watch --record` file: growth and time-to-limit from it.")
@click.option("--min-age", type=Seconds(), metavar="SECONDS",
              help="Override every age threshold (CLOSE_WAIT age, idle time, no-ACK time).")
@click.option("--nginx-config", type=PATH, metavar="FILE",
              help="nginx's configuration file, read instead of the running master's "
                   "(its -c, else /etc/nginx/nginx.conf; read only when root runs it).")
@click.option("--nagios", is_flag=True,
              help="Monitoring-plugin output (Nagios, Icinga): status line with perfdata, then "
                   "the findings; every failure is UNKNOWN, exit 3.")
@click.option("-w", "--warning", "warning", multiple=True, metavar="LABEL=RANGE",
              shell_complete=complete.perf_labels,
              help="With --nagios: WARNING when the perfdata figure LABEL is outside RANGE "
                   "(N, N:, ~:N, N:M, @N:M). Repeatable.")
@click.option("-c", "--critical", "critical", multiple=True, metavar="LABEL=RANGE",
              shell_complete=complete.perf_labels,
              help="With --nagios: CRITICAL when the perfdata figure LABEL is outside RANGE. "
                   "Repeatable.")
@click.option("-t", "--timeout", type=Seconds(0.001, 86400), metavar="SECONDS",
              help="Give up after SECONDS: exit 3 (UNKNOWN) in one line.")
@click.version_option(__version__, "-V", "--version", prog_name="halfopen",
                      message="%(prog)s %(version)s")
def doctor(pid: int | None, port: int | None, container: str | None, window: float,
           trace_s: float | None, middleboxes: tuple[str, ...],
           middlebox_file: str | None, as_json: bool, verbose: bool, netns_name: str | None,
           netns_pid: int | None, all_netns: bool, snapshot_file: str | None,
           save_snapshot: str | None, history_file: str | None, min_age: float | None,
           nginx_config: str | None, nagios: bool, warning: tuple[str, ...],
           critical: tuple[str, ...], timeout: float | None) -> int:
    """Diagnose half-open connections and the exhaustion they cause.

    \b
    Exit codes (Nagios): 0 ok, 1 warning, 2 critical, 3 nothing could be checked.
    Examples:
      halfopen doctor
      halfopen doctor -v --pid 812
      halfopen doctor --middlebox aws-nlb --json
      halfopen doctor --snapshot saved.json
      halfopen doctor --trace 30 --pid 812     # with the FINs and close() calls seen in 30 s
      halfopen doctor --nagios --timeout 50      # a Nagios/Icinga check (docs/nagios.md)
      halfopen doctor --nagios -w close_wait=100 -c close_wait=500 --port 443
    """
    if nagios and as_json:
        raise UsageError("choose one of --nagios, --json")
    if (warning or critical) and not nagios:
        raise UsageError("-w/--warning and -c/--critical judge the perfdata of --nagios: "
                         "add --nagios")
    from ..diagnose.perfdata import LABELS  # noqa: PLC0415 - only plugins pay for it
    thresholds = (ranges.parse_thresholds(warning, "-w", LABELS),
                  ranges.parse_thresholds(critical, "-c", LABELS))
    with deadline(timeout):
        return _run(pid=pid, port=port, container=container, window=window, trace_s=trace_s,
                    middleboxes=middleboxes,
                    middlebox_file=middlebox_file, as_json=as_json, verbose=verbose,
                    netns_name=netns_name, netns_pid=netns_pid, all_netns=all_netns,
                    snapshot_file=snapshot_file, save_snapshot=save_snapshot,
                    history_file=history_file, min_age=min_age, nginx_config=nginx_config,
                    nagios=nagios, thresholds=thresholds)


def _run(*, pid: int | None, port: int | None, container: str | None, window: float,
         trace_s: float | None, middleboxes: tuple[str, ...],
         middlebox_file: str | None, as_json: bool, verbose: bool, netns_name: str | None,
         netns_pid: int | None, all_netns: bool, snapshot_file: str | None,
         save_snapshot: str | None, history_file: str | None, min_age: float | None,
         nginx_config: str | None, nagios: bool,
         thresholds: tuple[dict[str, ranges.Range], dict[str, ranges.Range]]) -> int:
    boxes = _middleboxes(middleboxes, middlebox_file)
    options = Options(pid=pid, port=port, container=container, middleboxes=boxes,
                      min_age_s=min_age)
    if snapshot_file is not None:
        if any((netns_name, netns_pid, all_netns)) or nginx_config is not None or trace_s:
            raise UsageError("--snapshot reads nothing live: drop --netns/--netns-pid/"
                             "--all-netns/--nginx-config/--trace")
        snap, nginx, servers = store.load_snapshot(snapshot_file)
        table = rep.tally_of(snap, options)
        report = rep.diagnose(snap, options, _history(history_file, snap), nginx, table=table,
                              servers=servers)
        focus = None
    else:
        look = Look(resolve_namespaces(netns_name, netns_pid, all_netns), window, nginx_config)
        # --save-snapshot writes every socket: then the snapshot keeps its list
        focus = _focus_tally(options) if nagios and save_snapshot is None else None
        what = f"sampling counters over a {window:g} s window" if window else "reading sockets"
        with traced(trace_s, port, pid) as tracer, \
                progress(what, window or None, enabled=not nagios):
            examined = examine(look, options, history=lambda s: _history(history_file, s),
                               keep_sockets=save_snapshot is not None,
                               also=_focus_sink(focus, options), tracer=tracer)
        snap, report, table = examined.snapshot, examined.report, examined.table
        nginx, servers = examined.nginx, examined.servers
    if save_snapshot is not None:
        try:
            store.save_snapshot(save_snapshot, snap, nginx, servers)
        except OSError as exc:
            raise HalfopenError(f"cannot write --save-snapshot {save_snapshot}: "
                                f"{exc.strerror or exc}") from None
    if nagios:
        return _nagios(report, snap, table, focus, options, verbose, thresholds)
    if as_json:
        doctor_out.write_json(report, sys.stdout)
    else:
        doctor_out.write_text(report, sys.stdout, verbose)
    sys.stdout.flush()
    return report.exit_code


def _focus_tally(options: Options) -> Tally | None:
    """A second, small Tally of the --pid/--port/--container sockets, for the plugin's
    perfdata (the rules still read the whole table)."""
    from ..diagnose.perfdata import in_focus  # noqa: PLC0415 - only plugins pay for it
    return rep.new_tally(options) if in_focus(options) is not None else None


def _history(path: str | None, snap: Snapshot) -> History | None:
    """--history: the recorded samples of the processes read."""
    if path is None:
        return None
    from ..watch import history_db  # noqa: PLC0415 - sqlite3 and the watch's modules: --history pays
    return history_db.load_history(path, sorted(snap.processes))


def _focus_sink(focus: Tally | None, options: Options) -> Callable[[Socket], None] | None:
    """The focus's share of the streamed dump: the --pid/--port/--container sockets."""
    if focus is None:
        return None
    from ..diagnose.perfdata import in_focus  # noqa: PLC0415 - only plugins pay for it
    focused = in_focus(options)
    if focused is None:
        return None
    add = focus.add

    def maybe(s: Socket) -> None:
        if focused(s):
            add(s)
    return maybe


def _nagios(report: rep.Report, snap: Snapshot, table: Tally, focus: Tally | None,
            options: Options, verbose: bool,
            thresholds: tuple[dict[str, ranges.Range], dict[str, ranges.Range]]) -> int:
    """The plugin's status line and perfdata; its exit code. The focus's Tally, when
    the dump did not stream (a file, --save-snapshot), is made from the socket list."""
    from ..diagnose.perfdata import focus_pids, in_focus, judge, perfdata  # noqa: PLC0415 - only plugins pay for it
    focused = in_focus(options)
    if focused is not None and focus is None:
        focus = rep.new_tally(options)
        for s in snap.sockets:
            if focused(s):
                focus.add(s)
    pids = focus_pids(snap, options, focus) if focus is not None else None
    items, breaches, missing = judge(perfdata(snap, table, focus, pids), *thresholds)
    status = doctor_out.write_nagios(report, items, sys.stdout, verbose, breaches, missing)
    sys.stdout.flush()
    return rep.EXIT_BY_STATUS[status]
