"""Who or what a finding is about: a namespace, a process, a port, a peer, a middlebox.

Frozen: the rules make it (diagnose.common.subject), the report names the
container and the identity read with the data by replacing it
(diagnose.common.attribute, identify), and `halfopen fix` reads pid, start time
and the namespace's cookie from it before acting (model.identity). Its JSON
holds the fields that are set, in the order below (docs/design.md "Findings").

    >>> s = Subject("host", pid=812, comm="nginx", port=80, direction="in")
    >>> s.to_dict()
    {'netns': 'host', 'pid': 812, 'comm': 'nginx', 'port': 80, 'direction': 'in'}
    >>> Subject.from_dict(s.to_dict()) == s
    True
    >>> Subject().to_dict()
    {}
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Optional

from halfopen.records import record

from .container import Container


@record(frozen=True)
class Subject:
    netns: Optional[str] = None  # "host", an ip-netns name, "pod:NS/POD", "net:[INODE]"
    pid: Optional[int] = None
    comm: Optional[str] = None  # the process's name as it set it (untrusted: model.text)
    port: Optional[int] = None  # a local port (server side) or the remote one (client)
    addr: Optional[str] = None  # the listener's address
    direction: Optional[str] = None  # model.socket INBOUND / OUTBOUND
    syncookies: Optional[int] = None  # net.ipv4.tcp_syncookies where a SYN flood was seen
    peer: Optional[str] = None  # the remote service, ip:port
    middlebox: Optional[str] = None  # a declared middlebox's name, or "conntrack"
    scope: Optional[str] = None  # "host-wide" for facts of no one namespace
    sysctl: Optional[str] = None  # the tunable a kernel-tuning finding is about
    container: Optional[Container] = None  # the process's, when it runs in one
    # identity, as read with the data (model.identity): the process's start time in
    # clock ticks after boot; the namespace's nsfs inode and SO_NETNS_COOKIE
    start_time: Optional[int] = None
    netns_inode: Optional[int] = None
    netns_cookie: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value.to_dict() if isinstance(value, Container) else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Subject:
        """From a document whose shape was checked (model.finding.findings_shape); keys
        this version does not know are left out."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if isinstance(values.get("container"), dict):
            values["container"] = Container.from_dict(values["container"])
        return cls(**values)
