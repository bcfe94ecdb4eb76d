"""What every rule reads: the socket table's tally, the snapshot's host facts, the
doctor's options, optional history.

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
from ..model.servers import ServerFacts, ServerTimeouts, of_nginx
from ..model.snapshot import Snapshot
from ..model.trace import TraceFacts
from .middlebox import Middlebox
from .tally import Tally


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

    def age(self, default_s: float) -> float:
        """An age threshold in seconds: the rule's default unless --min-age overrides it."""
        return default_s if self.min_age_s is None else self.min_age_s


@record
class Context:
    snapshot: Snapshot
    options: Options = Options()
    history: History | None = None
    nginx: NginxConf | None = None  # None: nginx not running or its files not read
    nginx_note: str = ""  # why nginx is None, when it runs but could not be read
    # the socket table as the rules read it: built while the dump streams (live), or
    # from the snapshot's list (report.diagnose does either)
    tally: Tally | None = None
    # `doctor --trace`: the window's connection-end events folded per owner (collected
    # by collect.trace_window); None: not asked. Rules add its figures as evidence.
    trace: TraceFacts | None = None
    # haproxy's, redis's and httpd's idle timeouts from their files (collect.server_conf)
    servers: ServerFacts | None = None
    _now: float | None = field(default=None, repr=False)

    def server_timeouts(self) -> list[ServerTimeouts]:
        """Every server's idle timeouts in one shape: haproxy's, redis's, httpd's, and
        nginx's mapped into it (model.servers.of_nginx)."""
        found = list(self.servers.timeouts) if self.servers is not None else []
        if self.nginx is not None:
            found.append(of_nginx(self.nginx))
        return found

    def traced(self) -> TraceFacts | None:
        """The trace facts when a trace ran (not when it was asked for and could not)."""
        return self.trace if self.trace is not None and self.trace.traced else None

    @property
    def table(self) -> Tally:
        if self.tally is None:
            raise RuntimeError("Context without a tally: build it with report.diagnose")
        return self.tally

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
        return netns in self.checked_netns() or pid in self.table.pids

    # ---------------------------------------------------------------- time

    @property
    def now(self) -> float:
        """The snapshot's time, seconds since the epoch."""
        if self._now is None:
            self._now = datetime.datetime.fromisoformat(self.snapshot.taken_at).timestamp()
        return self._now

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
