"""One frame of the live view, drawn with rich.

The frame is a pure function of the window of samples (and, for growth,
of a growth function: the window's own fit, or the recorded history's).
Rich parses a str cell as markup: every cell that holds data (a process,
container or namespace name, a finding's title, a note) is a `Text` of
model.text.shown() text (`_data`), so a process named `[/]` can neither
stop the view and the recorder (MarkupError) nor restyle it, and one named
`\x1b[2J` cannot repaint the terminal.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from rich.console import Group, JustifyMethod
from rich.table import Table
from rich.text import Text

from .. import units
from ..model.finding import Finding
from ..model.text import shown
from . import trend
from .sample import Sample
from .window import Window

BARS = "▁▂▃▄▅▆▇█"
STATE_ORDER = ("established", "syn_sent", "syn_recv", "new_syn_recv", "fin_wait1", "fin_wait2",
               "time_wait", "close", "close_wait", "last_ack", "listen", "closing")
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan", "unknown": "magenta"}


def sparkline(values: Sequence[float], width: int = 30) -> str:
    """Unicode bars scaled between the series' min and max.

    >>> sparkline([0, 1, 2, 3, 4, 5, 6, 7])
    '▁▂▃▄▅▆▇█'
    """
    vals = list(values)[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return BARS[0 if hi == 0 else 3] * len(vals)
    return "".join(BARS[int((v - lo) / (hi - lo) * (len(BARS) - 1))] for v in vals)


def pct(used: float | None, limit: float | None) -> str:
    """'45.0%' or '-' when either side is unknown.

    >>> pct(45, 100), pct(3, None)
    ('45.0%', '-')
    """
    if used is None or not limit or limit < 0:
        return "-"
    return f"{100.0 * used / limit:.1f}%"


class FindingLog:
    """Remembers when findings appeared and cleared, between frames."""

    def __init__(self, keep: int = 8) -> None:
        self.active: dict[tuple, tuple[float, Finding]] = {}
        self.cleared: list[tuple[float, Finding]] = []
        self.keep = keep

    @staticmethod
    def key(f: Finding) -> tuple:
        return (f.id, tuple(sorted((k, str(v)) for k, v in f.subject.items())))

    def update(self, t: float, findings: list[Finding] | None) -> None:
        if findings is None:
            return
        now = {self.key(f): f for f in findings}
        for k, (_since, f) in list(self.active.items()):
            if k not in now:
                del self.active[k]
                self.cleared.append((t, f))
        for k, f in now.items():
            self.active[k] = (self.active[k][0] if k in self.active else t, f)
        self.cleared = self.cleared[-self.keep:]


def _data(text: str, style: str = "") -> Text:
    """A cell or line holding untrusted text: escaped, never markup."""
    return Text(shown(text), style=style)


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def render(window: Window, log: FindingLog, growth: Callable[[int, str], float | None],
           top: int = 10, doctor_note: str = "") -> Group:
    """Build the frame for the newest sample in `window`."""
    s: Sample = window.samples[-1]
    parts: list = []
    totals = s.state_totals()
    head = Text.assemble((f"halfopen watch  {shown(s.host)}  ", "bold"), _clock(s.t),
                         f"  {sum(totals.values())} TCP sockets  ",
                         f"{len(window.samples)} samples in window")
    parts.append(head)

    states = Table(title="sockets by state", title_justify="left", expand=False)
    states.add_column("state")
    states.add_column("now", justify="right")
    states.add_column("trend")
    for st in STATE_ORDER:
        series = window.state_series(st)
        if any(series):
            states.add_row(st, str(totals.get(st, 0)), sparkline(series))
    parts.append(states)

    procs = sorted((p for p in s.processes.values() if p.close_wait),
                   key=lambda p: p.close_wait, reverse=True)[:top]
    pt = Table(title="processes with most CLOSE_WAIT", title_justify="left")
    just: JustifyMethod
    for col, just in (("pid", "right"), ("comm", "left"), ("close_wait", "right"),
                      ("growth/min", "right"), ("oldest", "right"), ("fds", "right"),
                      ("fd limit", "right"), ("fd use", "right"), ("full in", "right"),
                      ("trend", "left")):
        pt.add_column(col, justify=just)
    boxed = any(p.container is not None for p in procs)
    if boxed:  # a host without containers: no empty column
        pt.add_column("container", justify="left")
    for p in procs:
        g = growth(p.pid, "close_wait")
        gf = growth(p.pid, "fds")
        rate = gf if gf is not None else g
        eta = trend.seconds_to_limit(p.fds or 0, p.fd_limit, rate)
        style = "bold red" if eta is not None and eta < 600 else ""
        cells: list[str | Text] = [str(p.pid), _data(p.comm), str(p.close_wait),
                 "-" if g is None else f"{g:+.1f}",
                 units.seconds(p.oldest_close_wait_s),
                 "-" if p.fds is None else str(p.fds),
                 "-" if p.fd_limit is None else str(p.fd_limit), pct(p.fds, p.fd_limit),
                 Text(units.seconds(eta), style=style),
                 sparkline([v for _t, v in window.proc_points(p.pid)], 20)]
        if boxed:
            cells.append(_data(p.container.text()) if p.container is not None else "-")
        pt.add_row(*cells)
    if not procs:
        pt.caption = "no CLOSE_WAIT sockets"
    parts.append(pt)

    lt = Table(title="listeners", title_justify="left")
    for col in ("netns", "address", "comm", "accept queue", "backlog", "use", "syn_recv"):
        lt.add_column(col, justify="left" if col in ("netns", "address", "comm") else "right")
    busiest = sorted(s.listeners, key=lambda li: (li.syn_recv, li.accept_queue / max(li.backlog, 1)),
                     reverse=True)[:top]
    for li in busiest:
        lt.add_row(_data(li.netns), f"{li.addr}:{li.port}", _data(li.comm or "-"),
                   str(li.accept_queue),
                   str(li.backlog), pct(li.accept_queue, li.backlog), str(li.syn_recv))
    parts.append(lt)

    f = s.facts
    parts.append(Text(f"conntrack {f.conntrack_count if f.conntrack_count is not None else '-'}"
                      f"/{f.conntrack_max if f.conntrack_max is not None else '-'} "
                      f"({pct(f.conntrack_count, f.conntrack_max)})   "
                      f"file handles {f.file_nr if f.file_nr is not None else '-'}"
                      f"/{f.file_max if f.file_max is not None else '-'} "
                      f"({pct(f.file_nr, f.file_max)})"))

    if s.findings is None:
        parts.append(_data(f"findings: {doctor_note or 'doctor unavailable'}", style="dim"))
    else:
        ft = Table(title="findings", title_justify="left")
        for col in ("since", "severity", "id", "title"):
            ft.add_column(col)
        rank = {"critical": 0, "warning": 1, "unknown": 2, "info": 3}
        active = sorted(log.active.values(), key=lambda x: (rank.get(x[1].severity, 4), x[0]))
        if len(active) > top:
            ft.caption = f"{len(active) - top} more findings: halfopen doctor lists them all"
        for since, fnd in active[:top]:
            ft.add_row(_clock(since), _data(fnd.severity, SEVERITY_STYLE.get(fnd.severity, "")),
                       _data(fnd.id), _data(fnd.title))
        for when, fnd in log.cleared:
            ft.add_row(_clock(when), Text("cleared", style="green"), _data(fnd.id), _data(fnd.title))
        if not log.active and not log.cleared:
            ft.caption = "none"
        parts.append(ft)
    for note in s.notes:
        if note != doctor_note:
            parts.append(_data(f"note: {note}", style="dim"))
    return Group(*parts)
