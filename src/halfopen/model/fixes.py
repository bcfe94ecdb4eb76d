"""The automatic fixes as typed records: what a rule proposes and `halfopen fix` applies.

A finding's `Fix` carries one of these as JSON (`Fix.params`, the shape
docs/design.md shows) and the command a person could run instead, rendered
from the same record, so the two never disagree:

    >>> c = SysctlChange("net.ipv4.tcp_keepalive_time", "300", "blue")
    >>> c.command()
    'ip netns exec blue sysctl -w net.ipv4.tcp_keepalive_time=300'
    >>> change("sysctl", c.params()) == c
    True

Reading params back (`change`) checks their types and says what is wrong in
one line (ValueError); the values' ranges are fix's to check (fix.sysctl,
fix.retrofit, fix.rlimit).
"""

from __future__ import annotations

import shlex
from typing import Any, Optional, Union

from halfopen.records import record

from ..errors import UsageError
from . import filter as filters
from .filter import Filter
from .host import HOST
from .identity import NetnsIdentity, ProcessIdentity, recorded_netns, recorded_process
from .subject import Subject

EVERY_SOCKET = Filter(None, "")


def in_netns(netns: str, argv: str) -> str:
    """The command line that runs `argv` in network namespace `netns`."""
    if netns in ("host", ""):
        return argv
    if netns.startswith(("net:[", "pod:")):
        return f"nsenter --net=/proc/PID/ns/net {argv}  # namespace {netns}: any PID inside it"
    return f"ip netns exec {shlex.quote(netns)} {argv}"


def _pid(action: str, params: dict[str, Any], subject: Subject) -> int:
    pid = params.get("pid", subject.pid)
    if pid is None:
        raise ValueError(f"the {action} fix names no pid")
    try:
        return int(pid)
    except (TypeError, ValueError):
        raise ValueError(f"bad pid {pid!r}") from None


def _int(params: dict[str, Any], name: str, default: Any = None) -> Any:
    v = params.get(name, default)
    if v is None:
        if default is None:
            return None  # optional and absent
        raise ValueError(f"bad {name} {v!r}: a number")
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ValueError(f"bad {name} {v!r}: a number") from None


@record(frozen=True)
class SysctlChange:
    key: str  # dotted name, as sysctl(8) spells it
    value: str  # as /proc/sys takes it
    netns: str = "host"  # the namespace it is set in (a host-wide key: "host")

    action = "sysctl"

    def params(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "netns": self.netns}

    @classmethod
    def from_params(cls, params: dict[str, Any], subject: Subject) -> SysctlChange:
        if not params.get("key"):
            raise ValueError("sysctl fix without a key")
        value = params.get("value")
        text = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        return cls(str(params["key"]), text,
                   str(params.get("netns") or subject.netns or HOST))

    def command(self) -> str:
        return in_netns(self.netns, f"sysctl -w {self.key}={shlex.quote(self.value)}")


@record(frozen=True)
class RlimitChange:
    pid: int
    soft: int
    hard: Optional[int] = None  # None: leave the hard limit
    resource: str = "nofile"

    action = "prlimit"

    def params(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pid": self.pid, "resource": self.resource, "soft": self.soft}
        if self.hard is not None:
            d["hard"] = self.hard
        return d

    @classmethod
    def from_params(cls, params: dict[str, Any], subject: Subject) -> RlimitChange:
        pid = _pid(cls.action, params, subject)
        soft, hard = params.get("soft"), params.get("hard")
        for name, v in (("soft", soft), ("hard", hard)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"bad {name} limit {v!r}: a positive number")
        if soft is None:
            raise ValueError("prlimit fix without a soft limit")
        return cls(pid, soft, hard, str(params.get("resource", "nofile")))

    def command(self) -> str:
        limits = f"{self.soft}:{self.hard}" if self.hard is not None else f"{self.soft}"
        return f"prlimit --pid {self.pid} --nofile={limits}"


@record(frozen=True)
class KeepaliveSettings:
    idle: int  # TCP_KEEPIDLE, seconds
    interval: int  # TCP_KEEPINTVL, seconds
    count: int  # TCP_KEEPCNT
    user_timeout_ms: Optional[int] = None  # TCP_USER_TIMEOUT; None: leave it


@record(frozen=True)
class KeepaliveChange:
    process: ProcessIdentity  # the start time and comm, when the finding recorded them
    settings: KeepaliveSettings
    filter: Filter = EVERY_SOCKET  # which of the process's sockets

    action = "keepalive"

    @property
    def pid(self) -> int:
        return self.process.pid

    def params(self) -> dict[str, Any]:
        s = self.settings
        d: dict[str, Any] = {"pid": self.pid, "idle": s.idle, "interval": s.interval,
                             "count": s.count}
        if s.user_timeout_ms is not None:
            d["user_timeout"] = s.user_timeout_ms  # the JSON key since halfopen.doctor/1
        if self.filter.text:
            d["filter"] = self.filter.text
        return d

    @classmethod
    def from_params(cls, params: dict[str, Any], subject: Subject) -> KeepaliveChange:
        pid = _pid(cls.action, params, subject)
        try:
            settings = KeepaliveSettings(
                _int(params, "idle", 60), _int(params, "interval", 10), _int(params, "count", 6),
                _int(params, "user_timeout_ms", params.get("user_timeout")))
        except ValueError:
            raise ValueError(f"bad keepalive values {params!r}") from None
        return cls(recorded_process(subject, pid), settings,
                   parse_filter(str(params.get("filter", ""))))

    def command(self) -> str:
        s = self.settings
        cmd = (f"halfopen keepalive --pid {self.pid} --idle {s.idle} "
               f"--interval {s.interval} --count {s.count}")
        if s.user_timeout_ms is not None:
            cmd += f" --user-timeout {s.user_timeout_ms}"
        if self.filter.text:
            cmd += f" {shlex.quote(self.filter.text)}"
        return cmd + " --yes"


@record(frozen=True)
class KillChange:
    filter: Filter  # the sockets
    netns: Optional[NetnsIdentity] = None  # None: the finding's namespace

    action = "kill"

    def params(self) -> dict[str, Any]:
        d: dict[str, Any] = {"filter": self.filter.text}
        if self.netns is not None:
            d["netns"] = self.netns.name
        return d

    @classmethod
    def from_params(cls, params: dict[str, Any], subject: Subject) -> KillChange:
        netns = params.get("netns") or subject.netns
        return cls(parse_filter(str(params.get("filter", ""))),
                   None if netns is None else recorded_netns(subject, str(netns)))

    def command(self) -> str:
        return f"halfopen kill {shlex.quote(self.filter.text)} --yes"


def parse_filter(text: str) -> Filter:
    """A filter as a fix's JSON carries it: the words joined by spaces."""
    return filters.parse(text.split())


def proposed_filter(text: str) -> Filter:
    """A rule's filter: parsed, or kept as text when the parser refuses it.

    What a fix does is decided when it is read back (change() parses strictly,
    and `halfopen fix` refuses a bad filter in one line), so a rule that wrote
    one the parser refuses still yields its finding, as before.
    """
    try:
        return parse_filter(text)
    except UsageError:
        return Filter(None, " ".join(text.split()))


Change = Union[SysctlChange, RlimitChange, KeepaliveChange, KillChange]
ACTIONS = {c.action: c for c in (SysctlChange, RlimitChange, KeepaliveChange, KillChange)}


def change(action: str, params: dict[str, Any], subject: Optional[Subject] = None) -> Change:
    """The typed change of an automatic fix; the finding's subject fills pid and netns."""
    try:
        kind = ACTIONS[action]
    except KeyError:
        raise ValueError(f"no automatic fix {action!r}; valid: {', '.join(ACTIONS)}") from None
    return kind.from_params(params, subject if subject is not None else Subject())
