"""Inline SVG line charts, drawn here so the report needs no script or network.

`line_chart` takes named series of (t, value) points and returns one <svg>
element: axes, five ticks a side, one polyline per series, a legend.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _fmt(v: float) -> str:
    """Axis labels: 1234567 -> '1.2M', 0.25 -> '0.25'.

    >>> _fmt(1234567), _fmt(0.25), _fmt(1500)
    ('1.2M', '0.25', '1.5k')
    >>> _fmt(178.5), _fmt(1.75)
    ('178', '1.75')
    """
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e3:
        return f"{v / 1e3:.1f}k"
    if a >= 100 or a == int(a):
        return str(int(round(v)))
    return f"{v:.3g}"


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def line_chart(title: str, series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
               width: int = 720, height: int = 260, dashed: Sequence[str] = (),
               unit: str = "") -> str:
    """One SVG chart; series with a name in `dashed` are drawn dashed (limits)."""
    ml, mr, mt, mb = 56, 170, 28, 28
    pw, ph = width - ml - mr, height - mt - mb
    pts = [p for _n, s in series for p in s]
    esc = html.escape
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{esc(title)}">',
           f'<text x="{ml}" y="16" font-size="13" font-weight="bold">{esc(title)}'
           f'{esc(" (" + unit + ")") if unit else ""}</text>']
    if not pts:
        out.append(f'<text class="empty" x="{ml}" y="{mt + ph / 2}" font-size="12" '
                   'fill="#888">no data recorded</text></svg>')
        return "".join(out)
    t0, t1 = min(p[0] for p in pts), max(p[0] for p in pts)
    v0, v1 = min(0.0, min(p[1] for p in pts)), max(p[1] for p in pts)
    # a flat series gets a span of its own size: `v0 + 1` is v0 again beyond 2**53
    if not t1 > t0:
        t1 = t0 + max(1.0, abs(t0))
    if not v1 > v0:
        v1 = v0 + max(1.0, abs(v0))

    def x(t: float) -> float:
        return ml + (t - t0) / (t1 - t0) * pw

    def y(v: float) -> float:
        return mt + ph - (v - v0) / (v1 - v0) * ph

    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
    for i in range(5):
        v = v0 + (v1 - v0) * i / 4
        t = t0 + (t1 - t0) * i / 4
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   'stroke="#eee"/>')
        out.append(f'<text x="{ml - 4}" y="{y(v) + 4:.1f}" font-size="10" '
                   f'text-anchor="end">{_fmt(v)}</text>')
        out.append(f'<text x="{x(t):.1f}" y="{height - 10}" font-size="10" '
                   f'text-anchor="middle">{_clock(t)}</text>')
    for i, (name, s) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="6 3"' if name in dashed else ""
        if len(s) == 1:
            out.append(f'<circle class="series" cx="{x(s[0][0]):.1f}" cy="{y(s[0][1]):.1f}" '
                       f'r="3" fill="{color}"/>')
        elif s:
            d = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s)
            out.append(f'<polyline class="series" fill="none" stroke="{color}" '
                       f'stroke-width="1.8"{dash} points="{d}"/>')
        ly = mt + 14 * i + 8
        out.append(f'<line x1="{ml + pw + 10}" x2="{ml + pw + 26}" y1="{ly}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="3"{dash}/>')
        out.append(f'<text x="{ml + pw + 30}" y="{ly + 4}" font-size="11">'
                   f'{esc(name[:24])}</text>')
    out.append("</svg>")
    return "".join(out)


def timeline(title: str, rows: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
             t0: float, t1: float, width: int = 720) -> str:
    """Horizontal bars: rows of (label, severity, [(start, end)]) between t0 and t1."""
    colors = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
    ml, mr, row_h = 260, 20, 18
    height = 40 + row_h * max(1, len(rows))
    pw = width - ml - mr
    span = (t1 - t0) or 1.0
    esc = html.escape
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{esc(title)}">',
           f'<text x="4" y="16" font-size="13" font-weight="bold">{esc(title)}</text>']
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
