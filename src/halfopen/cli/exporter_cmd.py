"""`halfopen exporter`: serve Prometheus metrics from a fresh snapshot per scrape."""

from __future__ import annotations

import errno
import signal
import threading

import click

from ..errors import UsageError
from ..watch.sampler import Sampler, Settings
from .options import namespace_options, resolve_namespaces


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:9469' -> ('127.0.0.1', 9469); '[::1]:9469', ':9469' too."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"bad --listen {text!r}: ADDRESS:PORT, e.g. 127.0.0.1:9469 or [::1]:9469")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@click.command()
@click.option("--listen", default="127.0.0.1:9469", show_default=True, metavar="ADDR:PORT",
              help="Address and port to serve /metrics on.")
@click.option("--top", default=20, show_default=True, type=click.IntRange(1, 10000),
              help="Process identities with their own series; the rest are summed as comm=\"other\".")
@click.option("--no-doctor", is_flag=True, help="Do not run the doctor on each scrape.")
@namespace_options
def exporter(listen: str, top: int, no_doctor: bool, netns_name: str | None,
             netns_pid: int | None, all_netns: bool) -> int:
    """Serve Prometheus metrics: sockets by state, per-process CLOSE_WAIT, fds, findings.

    \b
    Metrics are listed in docs/metrics.md; alert rules are in deploy/prometheus/.
    """
    from prometheus_client import start_http_server

    from ..watch.exporter import registry as build_registry

    host, port = parse_listen(listen)
    settings = Settings(namespaces=resolve_namespaces(netns_name, netns_pid, all_netns),
                        doctor=not no_doctor)
    registry = build_registry(Sampler(settings), top)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"{listen} is in use: choose another --listen") from None
        raise UsageError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    click.echo(f"halfopen: serving metrics on http://{listen}/metrics", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0
