"""Inline SVG line charts, drawn here so the report needs no script or network.

`line_chart` takes named series of (t, value) points and returns one <svg>
element: axes with round ticks (values in 1-2-5 steps, times on whole seconds,
minutes or hours), one polyline per series, a legend. `timeline` draws the
findings as bars in their severity's colour, with a legend of the colours.
"""

from __future__ import annotations

import datetime
import html
import math
import time
from collections.abc import Sequence

from halfopen.records import record

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S")


MAX_TICKS = 7


def ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round axis values covering lo..hi: steps of 1, 2 or 5 times a power of ten, about
    `target` intervals (people read 0, 20, 40 at a glance; 0, 20.25, 40.5 they do not).

    >>> ticks(0, 81)
    [0, 20, 40, 60, 80, 100]
    >>> ticks(0, 0.066)
    [0, 0.02, 0.04, 0.06, 0.08]
    >>> ticks(0, 100)
    [0, 20, 40, 60, 80, 100]
    >>> ticks(-3, 7)
    [-4, -2, 0, 2, 4, 6, 8]
    """
    if not hi > lo:
        hi = lo + max(1.0, abs(lo))
    raw = (hi - lo) / target
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start, end = math.floor(lo / step), math.ceil(hi / step)
    while end - start + 1 > MAX_TICKS:  # a span that rounding stretched: a bigger step
        step *= 2
        start, end = math.floor(lo / step), math.ceil(hi / step)
    places = max(0, -math.floor(math.log10(step)))
    out = [round(i * step, places) for i in range(start, end + 1)]
    return [int(v) if float(v).is_integer() and abs(v) < 2 ** 53 else v for v in out]


def _tick(v: float) -> str:
    """A round tick's label: 20000 -> '20k', 1500000 -> '1.5M', 0.02 -> '0.02'.

    >>> [_tick(v) for v in (0, 20000, 1500000, 0.02, 1050, 80)]
    ['0', '20k', '1.5M', '0.02', '1.05k', '80']
    """
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.6g}M"
    if a >= 1e3:
        return f"{v / 1e3:.6g}k"
    return f"{v:.6g}"


# seconds between time ticks: whole seconds, minutes, hours, days
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
              43200, 86400, 172800, 604800)


def time_ticks(t0: float, t1: float, most: int = 6) -> tuple[list[float], str]:
    """Times on round local clock values between t0 and t1, and their strftime format.

    >>> ts, fmt = time_ticks(1_700_000_000.0, 1_700_000_000.0 + 1190)
    >>> [t % 300 == (-time.localtime(t).tm_gmtoff) % 300 for t in ts], fmt, len(ts) <= 6
    ([True, True, True, True], '%H:%M', True)
    """
    span = max(t1 - t0, 1.0)
    step = next((s for s in TIME_STEPS if span / s <= most), TIME_STEPS[-1] * math.ceil(
        span / most / TIME_STEPS[-1]))
    offset = time.localtime(t0).tm_gmtoff  # align to the local clock (hours, days)
    first = math.ceil((t0 + offset) / step) * step - offset
    out: list[float] = []
    t = first
    while t <= t1 and len(out) <= most:
        out.append(float(t))
        t += step
    fmt = "%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 else "%m-%d"
    return out, fmt


def _svg(title: str, width: int, height: int) -> str:
    """The opening <svg> tag of a chart, its title as its accessible name."""
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{html.escape(title)}">')


@record(frozen=True)
class _Plot:
    """A line chart's plot area (left, top, width, height) and its scales: the span of
    times across (t0..t1) and of values up (v0..v1)."""

    left: int
    top: int
    width: int
    height: int
    t0: float
    t1: float
    v0: float
    v1: float

    def x(self, t: float) -> float:
        return self.left + (t - self.t0) / (self.t1 - self.t0) * self.width

    def y(self, v: float) -> float:
        return self.top + self.height - (v - self.v0) / (self.v1 - self.v0) * self.height


def _spans(pts: Sequence[tuple[float, float]], y_range: tuple[float, float] | None
           ) -> tuple[float, float, float, float, list[float]]:
    """t0, t1, v0, v1 of the points (values from 0 at least, and over `y_range`) and the
    value ticks; the value axis runs from the first round tick to the last."""
    t0, t1 = min(p[0] for p in pts), max(p[0] for p in pts)
    v0, v1 = min(0.0, min(p[1] for p in pts)), max(p[1] for p in pts)
    if y_range is not None:
        v0, v1 = min(v0, y_range[0]), max(v1, y_range[1])
    # a flat series gets a span of its own size: `v0 + 1` is v0 again beyond 2**53
    if not t1 > t0:
        t1 = t0 + max(1.0, abs(t0))
    if not v1 > v0:
        v1 = v0 + max(1.0, abs(v0))
    marks = ticks(v0, v1)
    if marks[-1] > marks[0]:
        v0, v1 = marks[0], marks[-1]
    return t0, t1, v0, v1, marks


def _axes(plot: _Plot, marks: Sequence[float], height: int) -> list[str]:
    """The frame, a grid line and label per value tick, a label per time tick."""
    ml, pw = plot.left, plot.width
    out = [f'<rect x="{ml}" y="{plot.top}" width="{pw}" height="{plot.height}" fill="none" '
           'stroke="#ccc"/>']
    for v in marks:
        y = plot.y(v)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text class="ytick" x="{ml - 4}" y="{y + 4:.1f}" font-size="10" '
                   f'text-anchor="end">{_tick(v)}</text>')
    times, fmt = time_ticks(plot.t0, plot.t1)
    for t in times:
        out.append(f'<text class="xtick" x="{plot.x(t):.1f}" y="{height - 10}" font-size="10" '
                   f'text-anchor="middle">'
                   f'{datetime.datetime.fromtimestamp(t).strftime(fmt)}</text>')
    return out


def _lines(plot: _Plot, series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
           dashed: Sequence[str]) -> list[str]:
    """Each series: a polyline (a dot when it has one point), and its legend entry right
    of the plot."""
    out = []
    lx = plot.left + plot.width
    for i, (name, s) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="6 3"' if name in dashed else ""
        if len(s) == 1:
            out.append(f'<circle class="series" cx="{plot.x(s[0][0]):.1f}" '
                       f'cy="{plot.y(s[0][1]):.1f}" r="3" fill="{color}"/>')
        elif s:
            d = " ".join(f"{plot.x(t):.1f},{plot.y(v):.1f}" for t, v in s)
            out.append(f'<polyline class="series" fill="none" stroke="{color}" '
                       f'stroke-width="1.8"{dash} points="{d}"/>')
        ly = plot.top + 14 * i + 8
        out.append(f'<line x1="{lx + 10}" x2="{lx + 26}" y1="{ly}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="3"{dash}/>')
        out.append(f'<text x="{lx + 30}" y="{ly + 4}" font-size="11">'
                   f'{html.escape(name[:24])}</text>')
    return out


# a line chart's margins around the plot (left, right, top, bottom): the legend takes the right one
MARGINS = (56, 170, 28, 28)


def line_chart(title: str, series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
               width: int = 720, height: int = 260, dashed: Sequence[str] = (),
               unit: str = "", y_range: tuple[float, float] | None = None) -> str:
    """One SVG chart; series with a name in `dashed` are drawn dashed (limits).
    `y_range`: the value axis at least this span (a percentage: 0-100, so that 0.07 %
    of a table looks empty, not full)."""
    ml, mr, mt, mb = MARGINS
    pw, ph = width - ml - mr, height - mt - mb
    pts = [p for _n, s in series for p in s]
    out = [_svg(title, width, height),
           f'<text x="{ml}" y="16" font-size="13" font-weight="bold">{html.escape(title)}'
           f'{html.escape(" (" + unit + ")") if unit else ""}</text>']
    if not pts:
        out.append(f'<text class="empty" x="{ml}" y="{mt + ph / 2}" font-size="12" '
                   'fill="#888">no data recorded</text></svg>')
        return "".join(out)
    t0, t1, v0, v1, marks = _spans(pts, y_range)
    plot = _Plot(ml, mt, pw, ph, t0, t1, v0, v1)
    return "".join(out + _axes(plot, marks, height) + _lines(plot, series, dashed) + ["</svg>"])


SEVERITY_COLORS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}


def timeline(title: str, rows: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
             t0: float, t1: float, width: int = 720) -> str:
    """Horizontal bars: rows of (label, severity, [(start, end)]) between t0 and t1,
    coloured by severity, with the colours' legend at the top right."""
    colors = SEVERITY_COLORS
    ml, mr, row_h = 260, 20, 18
    height = 40 + row_h * max(1, len(rows))
    pw = width - ml - mr
    span = (t1 - t0) or 1.0
    esc = html.escape
    out = [_svg(title, width, height),
           f'<text x="4" y="16" font-size="13" font-weight="bold">{esc(title)}</text>']
    lx = width - mr - 3 * 80
    for i, (sev, color) in enumerate(colors.items()):
        out.append(f'<rect class="legend" x="{lx + 80 * i}" y="5" width="12" height="12" '
                   f'fill="{color}"/><text x="{lx + 80 * i + 16}" y="15" font-size="11">'
                   f'{sev}</text>')
    if not rows:
        out.append('<text class="empty" x="4" y="36" font-size="12" fill="#888">'
                   'no findings recorded</text>')
    for i, (label, sev, spans) in enumerate(rows):
        yy = 26 + i * row_h
        out.append(f'<text x="4" y="{yy + 12}" font-size="11">{esc(label[:44])}</text>')
        for a, b in spans:
            xa = ml + (a - t0) / span * pw
            w = max(2.0, (b - a) / span * pw)
            out.append(f'<rect class="series" x="{xa:.1f}" y="{yy}" width="{w:.1f}" '
                       f'height="{row_h - 4}" fill="{colors.get(sev, "#9467bd")}">'
                       f'<title>{esc(sev)} {_clock(a)}-{_clock(b)}</title></rect>')
    out.append(f'<text x="{ml}" y="{height - 4}" font-size="10">{_clock(t0)}</text>')
    out.append(f'<text x="{ml + pw}" y="{height - 4}" font-size="10" text-anchor="end">'
               f'{_clock(t1)}</text></svg>')
    return "".join(out)
