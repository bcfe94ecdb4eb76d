"""One frame of the live view, drawn with rich.

The frame is a pure function of the window of samples (and, for growth,
of a growth function: the window's own fit, or the recorded history's).
Rich parses a str cell as markup: every cell that holds data (a process,
container or namespace name, a finding's title, a note) is a `Text` of
model.text.shown() text (`_data`), so a process named `[/]` can neither
stop the view and the recorder (MarkupError) nor restyle it, and one named
`\x1b[2J` cannot repaint the terminal.

It keeps 80 columns readable (short headers, tables without side borders) and,
on a short terminal (`height`), the findings come right after the headline
and every table is cut to what fits, so a 24-line terminal still shows what
is wrong; the rest stays for taller terminals and `halfopen doctor`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence

from rich import box
from rich.console import Group, JustifyMethod
from rich.table import Table
from rich.text import Text

from ... import units
from ...model.finding import Finding
from ...model.text import shown
from .. import trend
from ..sample import Sample
from ..window import Window

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
        return (f.id, tuple(sorted((k, str(v)) for k, v in f.subject.to_dict().items())))

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


def _table(title: str) -> Table:
    """A table in two lines of chrome (title, header) and no side borders: 80 columns
    and 24 lines go to the figures."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                 pad_edge=False, title_style="bold")


SHORT = 40  # lines: below this a terminal is short and the frame is fitted to it
CHROME = 4  # a table's title, header and rule, and its caption when it has one


def budget(height: int, fixed: int, wants: tuple[int, int, int]) -> tuple[int, int, int]:
    """Rows for the findings, the processes and the listeners on a short terminal, in
    that order of importance: each of the first two at least one, the findings up to
    half of what is left, the processes two thirds of the rest, the listeners the rest
    (0: not shown). `fixed`: the lines of everything else.

    >>> budget(24, 5, (3, 2, 9)), budget(24, 5, (9, 9, 9)), budget(40, 5, (3, 2, 9))
    ((3, 2, 1), (3, 2, 1), (3, 2, 17))
    >>> budget(16, 5, (9, 9, 9))  # nothing left: still one finding and one process
    (1, 1, 0)
    """
    free = height - fixed - 3 * CHROME - 1  # one spare line: Live's own last line
    f = min(wants[0], max(1, free // 2))
    p = min(wants[1], max(1, (free - f) * 2 // 3))
    return f, p, max(0, free - f - p)


def render(window: Window, log: FindingLog, growth: Callable[[int, str], float | None],
           top: int = 10, doctor_note: str = "", height: int | None = None) -> Group:
    """Build the frame for the newest sample in `window`; `height`: the terminal's lines
    (None: no limit, as for --once and pipes)."""
    s: Sample = window.samples[-1]
    totals = s.state_totals()
    head = Text.assemble((f"halfopen watch  {shown(s.host)}  ", "bold"), _clock(s.t),
                         f"  {sum(totals.values())} TCP sockets  ",
                         f"{len(window.samples)} samples")
    shown_states = [st for st in STATE_ORDER if any(window.state_series(st))]
    procs = sorted((p for p in s.processes.values() if p.close_wait),
                   key=lambda p: p.close_wait, reverse=True)
    notes = [_data(f"note: {note}", style="dim") for note in s.notes if note != doctor_note]
    facts = _facts(s)
    if height is None or height >= SHORT:
        states = _states_table(window, totals, shown_states)
        return Group(head, states, _procs_table(window, growth, procs[:top], 20),
                     _listeners_table(s, top), facts,
                     _findings(s, log, top, doctor_note), *notes)
    # a short terminal: the findings first, the states in a line or two, then what fits
    states_line = _states_line(window, totals, shown_states)
    fixed = 2 + len(notes) + len(states_line.plain) // 80 + 1
    wants = (max(1, len(log.active) + len(log.cleared)), max(1, len(procs)), len(s.listeners))
    nf, np_, nl = budget(height, fixed, wants)
    parts: list = [head, _findings(s, log, nf, doctor_note, wrap=False), states_line,
                   _procs_table(window, growth, procs[:min(np_, top)], 10)]
    if nl:
        parts.append(_listeners_table(s, min(nl, top)))
    return Group(*parts, facts, *notes)


def _states_table(window: Window, totals: dict, shown: list[str]) -> Table:
    states = _table("sockets by state")
    states.add_column("state")
    states.add_column("now", justify="right")
    states.add_column("trend")
    for st in shown:
        states.add_row(st, str(totals.get(st, 0)), sparkline(window.state_series(st)))
    return states


def _states_line(window: Window, totals: dict, shown: list[str]) -> Text:
    """'states  established 2 ▁▅▁▁  time_wait 1840 ▁▁██ ...': the states table in a line
    (wrapped), for a short terminal."""
    line = Text("states", style="bold")
    for st in shown:
        line.append(f"  {st} {totals.get(st, 0)} {sparkline(window.state_series(st), 6)}")
    return line


def _procs_table(window: Window, growth: Callable[[int, str], float | None],
                 procs: list, trend_width: int) -> Table:
    pt = _table("processes with most CLOSE_WAIT")
    just: JustifyMethod
    # short headers (docs/watch.md spells them out): 80 columns hold them all
    for col, just in (("pid", "right"), ("comm", "left"), ("CW", "right"),
                      ("CW/min", "right"), ("oldest", "right"), ("fds", "right"),
                      ("limit", "right"), ("fd%", "right"), ("full in", "right"),
                      ("trend", "left")):
        pt.add_column(col, justify=just, no_wrap=True)
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
                 sparkline([v for _t, v in window.proc_points(p.pid)], trend_width)]
        if boxed:
            cells.append(_data(p.container.text()) if p.container is not None else "-")
        pt.add_row(*cells)
    if not procs:
        pt.caption = "no CLOSE_WAIT sockets"
    return pt


def _listeners_table(s: Sample, rows: int) -> Table:
    lt = _table("listeners")
    for col in ("netns", "address", "comm", "queue", "backlog", "use", "syn_recv"):
        lt.add_column(col, justify="left" if col in ("netns", "address", "comm") else "right")
    busiest = sorted(s.listeners, key=lambda li: (li.syn_recv, li.accept_queue / max(li.backlog, 1)),
                     reverse=True)[:rows]
    for li in busiest:
        lt.add_row(_data(li.netns), f"{li.addr}:{li.port}", _data(li.comm or "-"),
                   str(li.accept_queue),
                   str(li.backlog), pct(li.accept_queue, li.backlog), str(li.syn_recv))
    return lt


def _facts(s: Sample) -> Text:
    f = s.facts
    return Text(f"conntrack {f.conntrack_count if f.conntrack_count is not None else '-'}"
                f"/{f.conntrack_max if f.conntrack_max is not None else '-'} "
                f"({pct(f.conntrack_count, f.conntrack_max)})   "
                f"file handles {f.file_nr if f.file_nr is not None else '-'}"
                f"/{f.file_max if f.file_max is not None else '-'} "
                f"({pct(f.file_nr, f.file_max)})")


def _findings(s: Sample, log: FindingLog, rows: int, doctor_note: str,
              wrap: bool = True) -> Table | Text:
    """The findings table: active ones worst first, then recently cleared, `rows` at most
    (`wrap`: long titles on several lines, else cut with an ellipsis)."""
    if s.findings is None:
        return _data(f"findings: {doctor_note or 'doctor unavailable'}", style="dim")
    ft = _table("findings")
    ft.add_column("since", no_wrap=True, min_width=8)
    ft.add_column("severity", no_wrap=True, min_width=8)
    ft.add_column("id", no_wrap=True, min_width=max([len(f.id) for _t, f in log.active.values()]
                                                     + [len(f.id) for _t, f in log.cleared] + [2]))
    ft.add_column("title", overflow="ellipsis")
    rank = {"critical": 0, "warning": 1, "unknown": 2, "info": 3}
    active = sorted(log.active.values(), key=lambda x: (rank.get(x[1].severity, 4), x[0]))
    if len(active) > rows:
        ft.caption = f"{len(active) - rows} more findings: halfopen doctor lists them all"
    def title(text: str) -> Text:
        # a cut title keeps one line a finding (the column may still shrink to fit)
        return Text(shown(text), no_wrap=not wrap, overflow="ellipsis")
    for since, fnd in active[:rows]:
        ft.add_row(_clock(since), Text(fnd.severity, style=SEVERITY_STYLE.get(fnd.severity, "")),
                   _data(fnd.id), title(fnd.title))
    room = rows - min(len(active), rows)  # cleared ones fill what the active leave
    for when, fnd in log.cleared[-room:] if room else []:
        ft.add_row(_clock(when), Text("cleared", style="green"), _data(fnd.id), title(fnd.title))
    if not log.active and not log.cleared:
        ft.caption = "none"
    return ft
