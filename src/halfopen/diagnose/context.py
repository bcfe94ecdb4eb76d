"""What every rule reads: the snapshot, the doctor's options, optional history.

A rule is a pure function `check(ctx: Context) -> list[Finding]`. When the
source it rests on was not read (not root, module missing, no host facts in
a saved snapshot) it raises `Unavailable(reason)`; the registry turns that
into one finding of severity "unknown" and the other rules still run.
"""

from __future__ import annotations

import datetime
from dataclasses import field

from halfopen.records import record

from ..model.history import History
from ..model.host import HostFacts, NamespaceHost, Tunables
from ..model.nginx import NginxConf
from ..model.snapshot import Snapshot
from ..model.socket import Socket
from ..model.states import TcpState
from .common import is_local_peer
from .middlebox import Middlebox

ESTABLISHED = int(TcpState.ESTABLISHED)


class Unavailable(Exception):
    """The rule's source could not be read; the message says why."""


@record(frozen=True)
class Options:
    """The doctor's knobs. `min_age_s` overrides every age threshold (tests, experts)."""

    pid: int | None = None
    port: int | None = None
    container: str | None = None  # a `container` filter word: name, pod, ns/pod, id (prefix)
    middleboxes: tuple[Middlebox, ...] = ()
    min_age_s: float | None = None


@record
class Context:
    snapshot: Snapshot
    options: Options = Options()
    history: History | None = None
    nginx: NginxConf | None = None  # None: nginx not running or `nginx -T` not read
    nginx_note: str = ""  # why nginx is None, when it runs but could not be read
    _now: float | None = field(default=None, repr=False)
    _by_state: dict[int, list[Socket]] | None = field(default=None, repr=False)
    _remote_est: list[Socket] | None = field(default=None, repr=False)
    _scope_pids: set[int] | None = field(default=None, repr=False)

    # ---------------------------------------------------------------- sockets, grouped once

    def in_state(self, *states: int) -> list[Socket]:
        """The snapshot's sockets in these states (one pass over the snapshot, shared by
        every rule)."""
        if self._by_state is None:
            groups: dict[int, list[Socket]] = {}
            for s in self.snapshot.sockets:
                got = groups.get(s.state)
                if got is None:
                    groups[s.state] = [s]
                else:
                    got.append(s)
            self._by_state = groups
        if len(states) == 1:
            return self._by_state.get(states[0], [])
        return [s for st in states for s in self._by_state.get(st, [])]

    def remote_established(self) -> list[Socket]:
        """ESTABLISHED sockets whose peer is not on this host (dead-peer, keepalive-off)."""
        if self._remote_est is None:
            self._remote_est = [s for s in self.in_state(ESTABLISHED) if not is_local_peer(s)]
        return self._remote_est

    # ---------------------------------------------------------------- scope

    def checked_netns(self) -> set[str]:
        """The namespaces being checked (--netns NAME, --all-netns; "host" by default):
        those the host facts were read in, else those of the snapshot."""
        hf = self.snapshot.host_facts
        if hf is not None and hf.namespaces:
            return set(hf.namespaces)
        return set(self.snapshot.namespaces) or {"host"}

    def in_scope(self, pid: int, netns: str) -> bool:
        """Does a per-process finding about `pid` (whose network namespace is `netns`)
        belong in this run? Yes when the process lives in a checked namespace or owns
        a socket in one (the snapshot holds only the checked namespaces' sockets).
        Host-wide facts (file-nr, tcp_mem) are not per process and need no scope."""
        if netns in self.checked_netns():
            return True
        if self._scope_pids is None:
            self._scope_pids = {o.pid for s in self.snapshot.sockets for o in (s.owners or ())}
        return pid in self._scope_pids

    # ---------------------------------------------------------------- time

    @property
    def now(self) -> float:
        """The snapshot's time, seconds since the epoch."""
        if self._now is None:
            self._now = datetime.datetime.fromisoformat(self.snapshot.taken_at).timestamp()
        return self._now

    def age(self, default_s: float) -> float:
        """An age threshold in seconds: the rule's default unless --min-age overrides it."""
        return default_s if self.options.min_age_s is None else self.options.min_age_s

    # ---------------------------------------------------------------- host facts

    @property
    def facts(self) -> HostFacts:
        if self.snapshot.host_facts is None:
            raise Unavailable("host facts were not collected in this snapshot")
        return self.snapshot.host_facts

    def unavailable(self, source: str, netns: str | None = None) -> str | None:
        """The reason `source` (optionally @netns) could not be read, else None."""
        hf = self.snapshot.host_facts
        if hf is None:
            return "host facts were not collected in this snapshot"
        if netns is not None and f"{source}@{netns}" in hf.unavailable:
            return hf.unavailable[f"{source}@{netns}"]
        return hf.unavailable.get(source)

    def namespaces(self) -> list[NamespaceHost]:
        return list(self.facts.namespaces.values())

    def tunables(self, netns: str) -> Tunables | None:
        ns = self.facts.namespaces.get(netns)
        return ns.tunables if ns is not None else None

    def global_tunables(self) -> Tunables | None:
        hf = self.facts
        if hf.global_tunables is not None:
            return hf.global_tunables
        ns = hf.namespaces.get("host")
        return ns.tunables if ns is not None else None

    def rate(self, netns: str, key: str) -> float | None:
        """Counter `key` ("TcpExt.ListenOverflows") per second over the window, or None."""
        ns = self.facts.namespaces.get(netns)
        if ns is None or ns.rates is None or key not in ns.rates.per_s:
            return None
        return ns.rates.per_s[key]

    def delta(self, netns: str, key: str) -> int | None:
        ns = self.facts.namespaces.get(netns)
        if ns is None or ns.rates is None or key not in ns.rates.delta:
            return None
        return ns.rates.delta[key]

    def counter(self, netns: str, key: str) -> int | None:
        ns = self.facts.namespaces.get(netns)
        if ns is None or ns.counters is None or key not in ns.counters.values:
            return None
        return ns.counters.values[key]

    def window_s(self, netns: str) -> float | None:
        ns = self.facts.namespaces.get(netns)
        return ns.rates.window_s if ns is not None and ns.rates is not None else None
