"""`halfopen trace [FILTER]`: ss's filter words (model.filter) on trace events.

One filter value, two places, as for `sockets`: a port the filter requires
(`sport = :P` or `dport = :P` among its top-level `and` terms) becomes the kernel
filter of every event that has port fields (either end: a superset), and the
whole filter runs in userspace on each event, as a socket with the event's
addresses, its owner and its state. An event matches `state X` when the socket
was in X before or after it (`state close-wait` shows the peer's FIN, the
owner's close() and the socket leaving close-wait).

Words only sock_diag can answer (dev, fwmark, cgroup, autobound) and `uid` (an
event does not carry the socket's uid) are refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UsageError
from ..model import filter as filters
from ..model.socket import Owner, Socket
from ..model.trace import STATE_WORD, TraceEvent
from .filter_names import look_up
from .trace_join import Flow

_STATE_NUMBER = {word: int(state) for state, word in STATE_WORD.items()}
_NOT_FOR_TRACE = (filters.DevIs, filters.MarkIs, filters.CgroupIs, filters.AutoBound)


def split_endpoint(endpoint: str | None) -> tuple[int, str, int]:
    """(family, address, port) of 'ADDR:PORT' or '[ADDR]:PORT'; None: (0, '', 0).

    >>> split_endpoint("[::1]:80"), split_endpoint("10.0.0.1:443")
    ((6, '::1', 80), (4, '10.0.0.1', 443))
    """
    if not endpoint:
        return 0, "", 0
    host, _, port = endpoint.rpartition(":")
    if host.startswith("["):
        return 6, host[1:-1], int(port)
    return 4, host, int(port)


def _refuse(expr: filters.Expr) -> bool:
    if isinstance(expr, _NOT_FOR_TRACE):
        raise UsageError("bad filter for trace: dev, fwmark, cgroup and autobound need the "
                         "socket table (use `halfopen sockets`); valid: state, sport, dport, "
                         "src, dst, pid, comm, container")
    if isinstance(expr, filters.OwnerIs) and expr.key == "uid":
        raise UsageError("bad filter for trace: an event does not carry the socket's uid; "
                         "valid: state, sport, dport, src, dst, pid, comm, container")
    return False


def compile_filter(words: tuple[str, ...]) -> filters.Filter:
    """Parse and check the words, with host names looked up (the hosts file only)."""
    flt = filters.parse(words)
    if flt.expr is None:
        return flt
    filters._any_leaf(flt.expr, _refuse)
    hosts, _cgroups = look_up(flt)
    return flt.bind({}, hosts=hosts)


def kernel_port(flt: filters.Filter) -> int | None:
    """A port every match has at one end (`sport = :P` / `dport = :P` and-ed at the top),
    for the kernel's filter; None when the filter requires none."""
    if flt.expr is None:
        return None
    for term in filters._conjuncts(flt.expr):
        if isinstance(term, filters.PortCmp) and term.op == "eq":
            return term.port
    return None


def _states(ev: TraceEvent) -> list[int]:
    words = [ev.to_state, ev.from_state] if ev.event == "state" else [ev.state]
    return [_STATE_NUMBER[w] for w in words if w in _STATE_NUMBER] or [0]


def matcher(flt: filters.Filter) -> Callable[[TraceEvent, Flow | None], bool]:
    """The userspace filter: (event, its flow) -> kept?"""
    if flt.is_empty:
        return lambda _ev, _flow: True
    match = flt.predicate()

    def keep(ev: TraceEvent, flow: Flow | None) -> bool:
        fam, laddr, lport = split_endpoint(ev.src)
        pfam, paddr, pport = split_endpoint(ev.dst)
        if flow is not None and flow.owner is not None:
            owners: tuple[Owner, ...] = (flow.owner,)
        elif ev.pid is not None:
            owners = (Owner(ev.pid, ev.comm or "", ev.fd or -1),)
        else:
            owners = ()
        for state in _states(ev):
            sock = Socket(fam or pfam, state, laddr, lport, paddr, pport, 0, 0, 0, 0, 0, 0, 0,
                          ev.cookie or 0, owners=owners)
            if match(sock):
                return True
        return False
    return keep
