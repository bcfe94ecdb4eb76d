"""`halfopen exporter`: serve Prometheus metrics from a fresh snapshot per scrape."""

from __future__ import annotations

import errno
import re
import resource
import signal
import socket
import threading

import click
from prometheus_client import CollectorRegistry

from ..errors import UsageError
from ..watch.sampler import Sampler, Settings
from ..watch.serving import serve, webconfig
from ..watch.serving.exporter import registry as build_registry
from ..watch.serving.trace_counts import TraceCounts
from .options import PATH, Integer, Seconds, namespace_options, resolve_namespaces

_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}(%[A-Za-z0-9_.-]{1,15})?\]|")
LISTEN_HELP = "ADDRESS:PORT, e.g. 127.0.0.1:9469, [::1]:9469 or :9469 (every address)"
FD_MARGIN = 64  # fds kept for the collectors (netlink, /proc files) beside the connections


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:9469' -> ('127.0.0.1', 9469); '[::1]:9469', ':9469' too.

    >>> parse_listen("[::1]:9469"), parse_listen(":80")
    (('::1', 9469), ('0.0.0.0', 80))
    """
    host, sep, port = text.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536 \
            or not _HOST.fullmatch(host):
        raise UsageError(f"bad --listen {text!r}: {LISTEN_HELP}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _max_connections(wanted: int) -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # beside the connections: the collectors' fds, and the answered ones being closed
    spare = FD_MARGIN + serve.Limits().max_lingering
    if soft != resource.RLIM_INFINITY and wanted > soft - spare:
        capped = max(1, soft - spare)
        click.echo(f"halfopen: note: --web.max-connections {wanted} lowered to {capped} "
                   f"(RLIMIT_NOFILE is {soft})", err=True)
        return capped
    return wanted


@click.command()
@click.option("--listen", default="127.0.0.1:9469", show_default=True, metavar="ADDR:PORT",
              help="Address and port to serve /metrics on.")
@click.option("--top", default=20, show_default=True, type=Integer(1, 10000),
              help="Process identities with their own series; the rest are summed as comm=\"other\".")
@click.option("--no-doctor", is_flag=True, help="Do not run the doctor on each scrape.")
@click.option("--web.config.file", "web_config", type=PATH, metavar="FILE",
              help="TLS and basic auth, in the Prometheus exporter-toolkit format.")
@click.option("--web.max-connections", "max_connections", default=256, show_default=True,
              type=Integer(1, 65536),
              help="Open connections at most; a newcomer past it cuts the oldest one that has "
                   "not sent its request, or is answered 503 if none.")
@click.option("--web.max-connections-per-source", "max_per_source", default=32,
              show_default=True, type=Integer(1, 65536),
              help="Open connections at most from one address (IPv6: one /64); a newcomer "
                   "past it cuts that source's oldest one that has not sent its request.")
@click.option("--web.read-timeout", "read_timeout", default=10.0, show_default=True,
              type=Seconds(0.1, 3600), metavar="SECONDS",
              help="Time a client has from connecting to the end of its request.")
@click.option("--web.workers", "workers", default=4, show_default=True, type=Integer(1, 64),
              help="Threads that render and send responses.")
@click.option("--trace", "trace", is_flag=True,
              help="Keep a tracer running (tracefs, root): count peers' FINs, close-wait "
                   "exits and resets by reason per process (halfopen_trace_*).")
@namespace_options
def exporter(listen: str, top: int, no_doctor: bool, web_config: str | None,
             max_connections: int, max_per_source: int, read_timeout: float, workers: int,
             trace: bool,
             netns_name: str | None, netns_pid: int | None, all_netns: bool) -> int:
    """Serve Prometheus metrics: sockets by state, per-process CLOSE_WAIT, fds, findings.

    \b
    Metrics are listed in docs/metrics.md; alert rules are in deploy/prometheus/.
    Idle and slow clients cost no thread: a client has --web.read-timeout
    seconds from connecting to send its request, at most --web.max-connections
    are open at once (--web.max-connections-per-source from one address), and
    --web.workers threads answer complete requests. Past either limit a new
    connection cuts the oldest one that has not sent its request yet, so idle
    clients cannot crowd out a scrape.
    """

    host, port = parse_listen(listen)
    access = webconfig.load(web_config) if web_config is not None else webconfig.Access()
    settings = Settings(namespaces=resolve_namespaces(netns_name, netns_pid, all_netns),
                        doctor=not no_doctor)
    registry = build_registry(Sampler(settings), top)
    try:
        listener = serve.listen(host, port)
    except socket.gaierror as exc:
        raise UsageError(f"bad --listen {listen!r}: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"{listen} is in use: choose another --listen") from None
        raise UsageError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    limits = serve.Limits(workers=workers, max_connections=_max_connections(max_connections),
                          max_per_source=max_per_source, read_timeout_s=read_timeout)
    tracer = _tracer(top, registry) if trace else None  # after the listener: none left if it failed
    server = serve.Server(listener, serve.metrics_render(registry), limits, access)
    server.start()
    scheme = "https" if access.tls is not None else "http"
    auth = f", basic auth for {len(access.users)} user(s)" if access.users else ""
    click.echo(f"halfopen: serving metrics on {scheme}://{listen}/metrics{auth}", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    if tracer is not None:
        tracer.stop()  # its instances removed
        if tracer.error:
            click.echo(f"halfopen: note: {tracer.error}", err=True)
    return 0


def _tracer(top: int, registry: CollectorRegistry) -> TraceCounts:
    """`--trace`: the tracer started and its counters registered (a note if it cannot trace)."""
    tracer = TraceCounts.start(top)
    if tracer.note:
        click.echo(f"halfopen: note: {tracer.note}", err=True)
    registry.register(tracer)
    return tracer
