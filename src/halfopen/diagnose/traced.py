"""What `doctor --trace` adds to the rules: the window's events as evidence.

Pure: the events were read and folded per owner by collect.trace_window (a
model.trace.TraceFacts on the Context); this module only turns one owner's figures
into Evidence, and groups resets received into middleboxes. Each rule calls these
where it builds its finding (closewait, deadpeer, timeouts).

- close-wait-leak: fins_received, closes_called ("received FIN on N connections in
  the window, called close() on M"), the exact CLOSE_WAIT ages of those sockets,
  and of the CLOSE_WAIT sockets older than the window how many the owner closed;
- dead-peer: keepalive and retransmission give-ups, per peer;
- timeout-mismatch: resets received on ESTABLISHED connections after they were idle
  at least the idle threshold, grouped by the address that sent them (a middlebox
  answers in the peer's name): `idle_resetters`.
"""

from __future__ import annotations

from collections import Counter

from halfopen.records import record

from ..model.finding import Evidence
from ..model.trace import TraceFacts, TraceOwnerFacts
from .common import ev, plural, seconds, top

TRACEFS = "tracefs"
AGES_SHOWN = 20  # exact CLOSE_WAIT ages listed, oldest first
MIN_IDLE_RESETS = 2  # resets after idle from one address before it is named a middlebox


def fin_phrase(row: TraceOwnerFacts) -> str:
    """'received FIN on 4 connections in the window, called close() on 0'."""
    return (f"received FIN on {plural(row.fins_received, 'connection')} in the window, "
            f"called close() on {row.closes_called}")


def close_wait_evidence(row: TraceOwnerFacts, window_s: float) -> list[Evidence]:
    out = [ev("fins_received", row.fins_received, TRACEFS,
              f"peers' FINs (established -> close-wait) in the {seconds(window_s)} trace window"),
           ev("closes_called", row.closes_called, TRACEFS,
              f"{fin_phrase(row)} (close() or shutdown() by the owner, seen by the kernel)")]
    if row.close_wait_ages_s:
        out.append(ev("close_wait_exact_ages_s", sorted(row.close_wait_ages_s, reverse=True)[:AGES_SHOWN],
                      TRACEFS, "exact, from the FIN: until the socket left CLOSE_WAIT, or until "
                               f"the window's end for the {row.still_in_close_wait} still in it; "
                               f"oldest {AGES_SHOWN} shown"))
    if row.earlier_close_wait:
        out.append(ev("earlier_close_wait_closed", [row.earlier_closed, row.earlier_close_wait],
                      TRACEFS, f"of the {row.earlier_close_wait} CLOSE_WAIT sockets whose FIN came "
                               f"before the window, the owner closed {row.earlier_closed} during it"))
    return out


def unclosed(row: TraceOwnerFacts) -> bool:
    """FINs came in the window and some of those sockets are still in CLOSE_WAIT."""
    return row.fins_received > row.closes_called and row.still_in_close_wait > 0


def giveups(row: TraceOwnerFacts) -> int:
    return row.keepalive_giveups + row.retransmit_giveups


def giveup_evidence(row: TraceOwnerFacts, window_s: float) -> list[Evidence]:
    return [ev("keepalive_giveups", row.keepalive_giveups, TRACEFS,
               f"connections reset by keepalive (reason tcp_keepalive_timeout) in the "
               f"{seconds(window_s)} trace window"),
            ev("retransmit_giveups", row.retransmit_giveups, TRACEFS,
               "connections the kernel closed after retransmitting in vain (tcp_retries2 or "
               "TCP_USER_TIMEOUT; no reset either way)"),
            ev("giveup_peers", top(Counter(row.giveup_peers)), TRACEFS, "peer ip:port, give-ups")]


@record
class IdleResetter:
    """An address that reset connections after they sat idle: a middlebox forgetting flows."""

    peer: str  # the address the resets came from (the peer's, as a middlebox spoofs it)
    resets: int
    idle_min_s: float
    idle_max_s: float
    owners: list[list]  # [[pid, comm], count] of the connections reset
    locals: list[list]  # [local ip:port, count]


def _host(endpoint: str) -> str:
    host = endpoint.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def idle_resetters(trace: TraceFacts, min_idle_s: float) -> list[IdleResetter]:
    """Addresses that reset MIN_IDLE_RESETS or more ESTABLISHED connections, each idle at
    least `min_idle_s` before its reset, most resets first."""
    groups: dict[str, list] = {}
    for row in trace.owners:
        for r in row.resets_received:
            if r.state != "established" or r.idle_s is None or r.idle_s < min_idle_s:
                continue
            groups.setdefault(_host(r.dst), []).append((r, row.pid, row.comm))
    out = []
    for peer, hits in groups.items():
        if len(hits) < MIN_IDLE_RESETS:
            continue
        idles = [r.idle_s for r, _p, _c in hits]
        owners = Counter(f"{c or '?'}[{p}]" if p is not None else "-" for _r, p, c in hits)
        locs = Counter(r.src for r, _p, _c in hits)
        out.append(IdleResetter(peer, len(hits), round(min(idles), 1), round(max(idles), 1),
                                top(owners), top(locs)))
    out.sort(key=lambda g: -g.resets)
    return out


def resetter_evidence(g: IdleResetter, window_s: float) -> list[Evidence]:
    return [ev("idle_resets_received", g.resets, TRACEFS,
               f"resets from {g.peer} on ESTABLISHED connections idle before them, in the "
               f"{seconds(window_s)} trace window"),
            ev("idle_before_reset_s", [g.idle_min_s, g.idle_max_s], TRACEFS,
               "shortest and longest idle time before a reset (last data either way, tcp_info)"),
            ev("connections_reset_owners", g.owners, TRACEFS),
            ev("connections_reset_local", g.locals, TRACEFS, "local ip:port, count")]
