"""What the doctor reads from a live system: one call for `doctor` and `fix`.

Every TCP socket with owners and tcp_info, the host facts (counters sampled
`window_s` apart), a sample of each process's connections' keepalive options
(collect.keepalive_sample), and the idle timeouts of the servers that run here
from their configuration files: nginx's (collect.nginx_conf), haproxy's, redis's and
Apache httpd's (collect.server_conf).
"""

from __future__ import annotations

from collections.abc import Callable

from ..model.nginx import NginxConf
from ..model.servers import ServerFacts
from ..model.snapshot import Snapshot
from ..model.socket import Socket
from . import keepalive_sample, nginx_conf, server_conf, sockets, take
from .netns import Namespace


def take_live(namespaces: tuple[Namespace, ...] = (), window_s: float = 3.0, read_nginx: bool = True,
              nginx_config: str | None = None, sink: Callable[[Socket], None] | None = None
              ) -> tuple[Snapshot, NginxConf | None, str, ServerFacts]:
    """(snapshot, nginx conf or None, a note on nginx or "", the other servers' timeouts);
    `nginx_config` names nginx's file to read; read_nginx False reads no server's.

    `sink`: each socket goes to it as the dump streams, the snapshot keeps none
    (collect.take.take)."""
    query = sockets.Query(tcp_info=True, owners=True, namespaces=namespaces)
    picker = keepalive_sample.Picker()
    snap = take.take_full(query, window=window_s,
                               sink=picker.wrap(sink) if sink is not None else None)
    if sink is None:  # the snapshot kept its list
        for s in snap.sockets:
            picker.add(s)
    keepalive_sample.read_into(snap, picker)
    nginx, note = nginx_conf.read(snap, config=nginx_config) if read_nginx else (None, "")
    servers = server_conf.read() if read_nginx else ServerFacts()
    return snap, nginx, note, servers
