"""`halfopen trace` output: one line per event, JSON lines, and the summary.

The summary folds events per owner, peer and reason, and per owner says what the
article's strace check says: FINs received, and on how many of those sockets
the owner called close() (or shutdown()), with the exact time they spent in
CLOSE_WAIT where the trace saw them enter it.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

from ..model.text import shown
from ..model.trace import SCHEMA, TraceEvent

__all__ = ["SCHEMA", "Summary", "event_line", "write_jsonl"]


def event_line(ev: TraceEvent) -> str:
    """One event for a terminal; the owner's name through shown()."""
    clock = time.strftime("%H:%M:%S", time.localtime(ev.time)) + f".{int(ev.time % 1 * 1e6):06d}"
    owner = f"{shown(ev.comm or '?')}[{ev.pid}]" if ev.pid is not None else "-"
    if ev.container:
        owner += f"@{shown(ev.container)}"
    what = ""
    if ev.event == "state":
        what = f"{ev.from_state} -> {ev.to_state}"
        if ev.ended_by == "peer":
            what += " (peer's FIN)"
        elif ev.ended_by == "local":
            what += " (this side's FIN)"
        if ev.lived_s is not None:
            what += f" lived {ev.lived_s:.3f}s"
        if ev.close_wait_s is not None:
            what += f" after {ev.close_wait_s:.3f}s in close-wait"
    elif ev.event in ("reset-sent", "reset-received"):
        what = f"reason={ev.reason or '-'} state={ev.state or '-'}"
    elif ev.event == "retransmit-timeout":
        what = f"state={ev.state or '-'}"
    elif ev.event == "close":
        what = f"fd={ev.fd} state={ev.state or '-'}"
    return f"{clock} {ev.event:<18} {owner:<24} {ev.src or '-'} -> {ev.dst or '-'} {what}"


def write_jsonl(ev: TraceEvent, out: IO[str]) -> None:
    out.write(json.dumps(ev.to_dict(), separators=(",", ":")) + "\n")


def _peer(dst: str | None) -> str | None:
    """The peer's address without its port: '[::1]:80' -> '::1'."""
    if dst is None:
        return None
    host = dst.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


class Summary:
    """Events folded as they come; `document()` is --summary --json."""

    def __init__(self) -> None:
        self.events = 0
        self.groups: dict[tuple, int] = {}
        self.owners: dict[tuple[int | None, str | None], dict[str, Any]] = {}
        self._flows: dict[tuple[int | None, str | None], tuple[set[int], set[int]]] = {}
        self._keep: list[object] = []  # the flows counted, so their ids stay theirs

    def add(self, ev: TraceEvent, flow: Any) -> None:
        self.events += 1
        detail = ev.reason if ev.event.startswith("reset") else (
            f"{ev.from_state}->{ev.to_state}" if ev.event == "state" else ev.state)
        key = (ev.event, ev.pid, ev.comm, _peer(ev.dst), detail)
        self.groups[key] = self.groups.get(key, 0) + 1
        who = (ev.pid, ev.comm)
        row = self.owners.setdefault(who, {"pid": ev.pid, "comm": ev.comm, "container": ev.container,
                                           "fins_received": 0, "closes_called": 0, "close_events": 0,
                                           "resets_sent": 0, "resets_received": 0,
                                           "retransmits": 0, "close_wait_max_s": None})
        fins, closes = self._flows.setdefault(who, (set(), set()))
        if flow is not None:
            self._keep.append(flow)
        if ev.event == "state" and ev.to_state == "close-wait" and flow is not None:
            fins.add(id(flow))
        if flow is not None and id(flow) in fins and getattr(flow, "closed", False):
            closes.add(id(flow))
        if ev.event == "close":
            row["close_events"] += 1
        elif ev.event == "reset-sent":
            row["resets_sent"] += 1
        elif ev.event == "reset-received":
            row["resets_received"] += 1
        elif ev.event == "retransmit-timeout":
            row["retransmits"] += 1
        if ev.close_wait_s is not None:
            row["close_wait_max_s"] = max(row["close_wait_max_s"] or 0.0, round(ev.close_wait_s, 6))
        row["fins_received"] = len(fins)
        row["closes_called"] = len(closes)

    def document(self, duration_s: float, lost: int, notes: list[str]) -> dict[str, Any]:
        groups = [{"event": e, "pid": p, "comm": c, "peer": peer, "detail": d, "count": n}
                  for (e, p, c, peer, d), n in sorted(self.groups.items(), key=lambda kv: -kv[1])]
        return {"schema": SCHEMA, "summary": True, "duration_s": round(duration_s, 3),
                "lost_events": lost, "events": self.events, "notes": notes,
                "owners": list(self.owners.values()), "groups": groups}

    def text(self, duration_s: float, lost: int) -> list[str]:
        lines = [f"{self.events} events in {duration_s:.1f}s, {lost} lost"]
        for row in self.owners.values():
            who = f"{shown(row['comm'] or '?')}[{row['pid']}]" if row["pid"] is not None else "owner unknown"
            lines.append(f"{who}: FIN received on {row['fins_received']}, close() called on "
                         f"{row['closes_called']}; resets sent {row['resets_sent']}, received "
                         f"{row['resets_received']}; retransmits {row['retransmits']}")
        for (e, p, c, peer, d), n in sorted(self.groups.items(), key=lambda kv: -kv[1]):
            who = f"{shown(c or '?')}[{p}]" if p is not None else "-"
            lines.append(f"  {n:>7} {e:<18} {who:<24} peer {peer or '-'} {d or ''}")
        return lines
