"""`halfopen keepalive --pid PID|--container NAME [FILTER]`: retrofit keepalive onto a
running process."""

from __future__ import annotations

import json
import sys

import click

from ..collect import owners
from ..errors import EXIT_CRITICAL, UsageError
from ..fix import retrofit
from ..kernel import procfs, sockopt
from ..model import filter as filters
from ..model.text import shown
from .format import endpoint, table
from .options import PID, Integer, filter_argument

RELEASE_NOTE = ("released sockets sent our FIN and leave the kernel table once the peer "
                "answers; their fds remain the application's to close")


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--pid", type=PID, help="The process whose sockets to change.")
@click.option("--container", metavar="NAME|ID",
              help="The one process holding sockets in this container or pod (name, pod, "
                   "NAMESPACE/POD, id or id prefix).")
@filter_argument
@click.option("--idle", type=Integer(1, sockopt.MAX_KEEPIDLE), default=60, show_default=True,
              help="TCP_KEEPIDLE: seconds idle before the first probe.")
@click.option("--interval", type=Integer(1, sockopt.MAX_KEEPINTVL), default=10, show_default=True,
              help="TCP_KEEPINTVL: seconds between probes.")
@click.option("--count", type=Integer(1, sockopt.MAX_KEEPCNT), default=6, show_default=True,
              help="TCP_KEEPCNT: unanswered probes before the reset.")
@click.option("--user-timeout", "user_timeout", type=Integer(0, 2**31 - 1), metavar="MS",
              help="TCP_USER_TIMEOUT in ms (unacknowledged data); unset: left as is.")
@click.option("--release", is_flag=True,
              help="shutdown(SHUT_WR) CLOSE_WAIT sockets instead: send our FIN.")
@click.option("--yes", is_flag=True, help="Really change them (without it: a dry run).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def keepalive(pid: int | None, container: str | None, filter_words: tuple[str, ...], idle: int, interval: int, count: int,
              user_timeout: int | None, release: bool, yes: bool, as_json: bool) -> int:
    """Set TCP keepalive on a running process's sockets, with no restart.

    Takes a second fd on each matching TCP socket of PID (pidfd_getfd),
    sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (and
    TCP_USER_TIMEOUT if given), reads them back and closes the duplicate.
    A dead peer then resets the socket after idle + interval x count
    seconds. Listeners pass the setting on to connections they accept later.

    \b
    Examples:
      halfopen keepalive --pid 812                       # dry run
      halfopen keepalive --pid 812 --idle 60 --interval 10 --count 6 --yes
      halfopen keepalive --pid 812 state close-wait --release --yes
      halfopen keepalive --container shop/web-7f9 --yes
    """
    settings = retrofit.Settings(idle, interval, count, user_timeout)
    settings.check()
    if container is not None:
        if pid is not None:
            raise UsageError("choose one of --pid PID, --container NAME|ID")
        pid = _container_pid(container)
    elif pid is None:
        raise UsageError("choose one of --pid PID, --container NAME|ID")
    retrofit.check_pid(pid)
    flt = filters.parse(filter_words)
    for note in flt.notes:  # how a value was read (a port past 65535), before acting on it
        click.echo(f"halfopen: note: {note}", err=True)
    start = procfs.start_time(pid)  # the process whose sockets are listed is the one set
    targets = retrofit.find_sockets(pid, flt)
    results = retrofit.retrofit(pid, targets, settings, apply=yes, release=release, start=start)
    failed = [r for r in results if r.result == "failed"]
    if as_json:
        json.dump({"schema": "halfopen.keepalive/1", "pid": pid, "dry_run": not yes,
                   "wanted": {"idle": idle, "interval": interval, "count": count,
                              "user_timeout_ms": user_timeout},
                   "sockets": [r.to_dict() for r in results]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _text(pid, results, yes)
    return EXIT_CRITICAL if failed else 0


def _container_pid(word: str) -> int:
    """The pid of the one process in container `word` that holds sockets.

    Several (a master and its workers share a listener): the user picks one,
    as keepalive changes one process's sockets and says which.
    """
    held = owners.scan()
    pids = sorted((p.pid, p.comm) for p in held.processes.values()
                  if p.socket_inodes and p.container is not None and p.container.matches(word))
    if not pids:
        raise UsageError(f"no process holding sockets is in a container matching {word!r} "
                         "(a name, pod, NAMESPACE/POD, id or id prefix of 4+ digits)")
    if len(pids) > 1:
        listed = ", ".join(f"{pid} ({comm})" for pid, comm in pids[:10])
        raise UsageError(f"{len(pids)} processes in container {word!r} hold sockets: {listed}; "
                         "choose one with --pid")
    return pids[0][0]


def _text(pid: int, results: list[retrofit.SocketResult], yes: bool) -> None:
    if not results:
        click.echo(f"pid {pid} holds no TCP socket the filter matches: nothing to change")
        return
    rows = []
    for r in results:
        s = r.sock
        rows.append([str(r.fd), s.state_name, endpoint(s.local_addr, s.local_port),
                     endpoint(s.peer_addr, s.peer_port), r.result,
                     r.before.text() if r.before else "-",
                     r.after.text() if r.after and r.after != r.before else "-"])
    click.echo(table(rows, ["fd", "state", "local", "peer", "result", "before", "after"],
                     right={0}))
    for r in results:
        if r.note and r.result != "released":
            click.echo(f"  fd {r.fd}: {r.result}: {shown(r.note)}")
    pending = sum(r.result in ("would set", "would release") for r in results)
    if not yes:
        click.echo(f"dry run: {pending} socket(s) would change; add --yes to do it")
    if any(r.result in ("released", "would release") for r in results):
        click.echo(RELEASE_NOTE)
