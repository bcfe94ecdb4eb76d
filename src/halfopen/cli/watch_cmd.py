"""`halfopen watch`: live view of socket states, leaks, limits and findings."""

from __future__ import annotations

import click

from ..watch.presentation.loop import WatchOptions, run
from ..watch.sampler import Settings
from . import duration
from .options import PATH, Integer, namespace_options, resolve_namespaces


@click.command()
@click.option("--interval", default="2", show_default=True, metavar="S",
              help="Time between samples: seconds, or with a unit (2, 10s, 1m).")
@click.option("--record", type=PATH, metavar="FILE.db", help="Append every sample to this SQLite history.")
@click.option("--retention", default="7d", show_default=True, metavar="DURATION",
              help="Drop recorded samples older than this (s, m, h, d, w).")
@click.option("--window", default="5m", show_default=True, metavar="DURATION",
              help="Growth is fitted over this much of the latest samples.")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option("--top", default=10, show_default=True, type=Integer(1, 1000),
              help="Rows in the process and listener tables.")
@click.option("--no-doctor", is_flag=True, help="Do not run the doctor on each sample.")
@namespace_options
def watch(interval: str, record: str | None, retention: str, window: str, once: bool,
          top: int, no_doctor: bool, netns_name: str | None, netns_pid: int | None,
          all_netns: bool) -> int:
    """Watch TCP states, CLOSE_WAIT growth per process, fd and conntrack use, findings.

    \b
    Examples:
      halfopen watch
      halfopen watch --once
      halfopen watch --interval 10 --record /var/lib/halfopen/history.db --retention 14d
    """
    opts = WatchOptions(
        interval_s=duration.parse(interval, "interval"),
        window_s=duration.parse(window, "window"),
        record=record,
        retention_s=duration.parse(retention, "retention"),
        once=once, top=top,
        settings=Settings(namespaces=resolve_namespaces(netns_name, netns_pid, all_netns),
                          doctor=not no_doctor),
    )
    return run(opts)
