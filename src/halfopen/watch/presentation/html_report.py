"""The HTML report: one self-contained page from a recorded history.

Charts are inline SVG (svg.py); the page fetches nothing. A few lines of
inline script only mark, after layout, how many charts the browser drew
(body data-charts-drawn), which the browser test reads.
"""

from __future__ import annotations

import datetime
import html
import json
import sqlite3
from collections import defaultdict
from collections.abc import Sequence

from ... import units
from ...model.finding import SEVERITY_RANK, UNKNOWN_RANK
from .. import history_db
from . import svg

MAX_POINTS = 600
TOP = 6

_SCRIPT = """
document.addEventListener('DOMContentLoaded', function () {
  var drawn = 0, charts = document.querySelectorAll('svg.chart');
  charts.forEach(function (c) {
    var b = c.getBBox(), marks = c.querySelectorAll('.series').length;
    if (b.width > 0 && b.height > 0) { drawn++; }
    c.setAttribute('data-drawn', (b.width > 0 && b.height > 0) ? 'yes' : 'no');
    c.setAttribute('data-marks', String(marks));
  });
  document.body.setAttribute('data-charts', String(charts.length));
  document.body.setAttribute('data-charts-drawn', String(drawn));
});
"""

_STYLE = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:980px}
h1{font-size:20px} h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right} .critical{color:#d62728;font-weight:bold} .warning{color:#c60}
.note{color:#666;font-size:12px}
"""


def downsample(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most `limit` points: the maximum of each bucket, so spikes survive.

    >>> downsample([(i, i % 3) for i in range(9)], 3)
    [(2, 2), (5, 2), (8, 2)]
    """
    n = len(points)
    if n <= limit:
        return list(points)
    size = -(-n // limit)
    out = []
    for i in range(0, n, size):
        bucket = points[i:i + size]
        best = max(bucket, key=lambda p: p[1])
        out.append((bucket[-1][0], best[1]))
    return out


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def state_series(db: sqlite3.Connection) -> list[tuple[str, list[tuple[float, float]]]]:
    rows = db.execute("SELECT s.t, sc.state, sum(sc.n) FROM state_counts sc JOIN samples s"
                      " ON s.id = sc.sample_id GROUP BY s.id, sc.state ORDER BY s.t").fetchall()
    times = [r[0] for r in db.execute("SELECT t FROM samples ORDER BY t")]
    by: dict[str, dict[float, float]] = defaultdict(dict)
    for t, st, n in rows:
        by[st][t] = n
    return [(st, downsample([(t, by[st].get(t, 0)) for t in times]))
            for st in sorted(by, key=lambda k: -max(by[k].values()))]


def top_pids(db: sqlite3.Connection, n: int = TOP) -> list[tuple[int, str, int]]:
    return db.execute("SELECT pid, comm, max(n) m FROM proc_states WHERE state = 'close_wait'"
                      " GROUP BY pid ORDER BY m DESC LIMIT ?", (n,)).fetchall()


def proc_series(db: sqlite3.Connection, pid: int, column: str) -> list[tuple[float, float]]:
    assert column in ("fds", "fd_limit")
    rows = db.execute(f"SELECT s.t, f.{column} FROM proc_fds f JOIN samples s ON s.id ="
                      f" f.sample_id WHERE f.pid = ? AND f.{column} IS NOT NULL ORDER BY s.t",
                      (pid,)).fetchall()
    return downsample([(float(t), float(v)) for t, v in rows])


def counter_rates(db: sqlite3.Connection, limit: int = 8) -> list[tuple[str, list[tuple[float, float]]]]:
    """Per-second rates between consecutive samples; counters that moved, busiest first."""
    rows = db.execute("SELECT c.name, s.t, c.value FROM counters c JOIN samples s ON s.id ="
                      " c.sample_id ORDER BY c.name, s.t").fetchall()
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name, t, v in rows:
        by[name].append((t, v))
    out = []
    for name, pts in by.items():
        rates = [(t1, (v1 - v0) / (t1 - t0)) for (t0, v0), (t1, v1) in zip(pts, pts[1:])
                 if t1 > t0 and v1 >= v0]
        if any(r for _t, r in rates):
            out.append((name, downsample(rates)))
    out.sort(key=lambda x: -max(r for _t, r in x[1]))
    return out[:limit]


def host_use(db: sqlite3.Connection) -> list[tuple[str, list[tuple[float, float]]]]:
    rows = db.execute("SELECT t, conntrack_count, conntrack_max, file_nr, file_max FROM samples"
                      " ORDER BY t").fetchall()
    ct = [(t, 100.0 * c / m) for t, c, m, _f, _fm in rows if c is not None and m]
    fh = [(t, 100.0 * f / fm) for t, _c, _m, f, fm in rows if f is not None and fm]
    return [("conntrack %", downsample(ct)), ("file handles %", downsample(fh))]


def _subject(text: str | None) -> dict:
    """A finding's subject as recorded (JSON); {} when a damaged file holds something else."""
    try:
        subj = json.loads(text or "{}")
    except ValueError:
        return {}
    return subj if isinstance(subj, dict) else {}


def finding_spans(db: sqlite3.Connection) -> list[tuple[str, str, list[tuple[float, float]]]]:
    """(label, worst severity, [(first seen, last seen)]) per finding and subject."""
    times = [r[0] for r in db.execute("SELECT t FROM samples WHERE doctor = 1 ORDER BY t")]
    index = {t: i for i, t in enumerate(times)}
    seen: dict[tuple[str, str], list[float]] = defaultdict(list)
    sev: dict[tuple[str, str], str] = {}
    rank = SEVERITY_RANK  # recorded findings are info, warning, critical or unknown
    for fid, severity, subject, t in db.execute(
            "SELECT f.id, f.severity, f.subject, s.t FROM findings f JOIN samples s ON"
            " s.id = f.sample_id ORDER BY s.t"):
        subj = _subject(subject)
        label = str(fid) + "".join(f" {k}={subj[k]}" for k in ("comm", "pid", "port") if k in subj)
        key = (label, fid)
        seen[key].append(t)
        if rank.get(severity, UNKNOWN_RANK) >= rank.get(sev.get(key, "info"), UNKNOWN_RANK):
            sev[key] = severity
    out = []
    for key, ts in seen.items():
        spans: list[tuple[float, float]] = []
        for t in ts:
            if spans and index.get(t, -2) == index.get(spans[-1][1], -5) + 1:
                spans[-1] = (spans[-1][0], t)
            else:
                spans.append((t, t))
        out.append((key[0], sev[key], spans))
    return sorted(out, key=lambda r: r[2][0][0])


def render(db: sqlite3.Connection, path: str) -> str:
    """The whole page as a string."""
    esc = html.escape
    n, t0, t1 = db.execute("SELECT count(*), min(t), max(t) FROM samples").fetchone()
    host = (db.execute("SELECT value FROM meta WHERE key = 'host'").fetchone() or ("?",))[0]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>halfopen report: "
             f"{esc(host)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>",
             f"<h1>halfopen report: {esc(host)}</h1>"]
    if not n:
        parts.append(f"<p>{esc(path)} holds no samples.</p></body></html>")
        return "".join(parts)
    parts.append(f"<p>{n} samples from {_clock(t0)} to {_clock(t1)} "
                 f"({units.seconds(t1 - t0)}), recorded in {esc(path)}.</p>")

    tops = top_pids(db)
    if tops:
        parts.append("<h2>Processes with most CLOSE_WAIT</h2><table><tr><th>pid</th><th>comm</th>"
                     "<th>max CLOSE_WAIT</th><th>growth/min (last 10 min)</th>"
                     "<th>oldest CLOSE_WAIT</th></tr>")
        for pid, comm, m in tops:
            g = history_db.growth_per_minute(db, pid)
            age = history_db.oldest_close_wait_age(db, pid)
            parts.append(f"<tr><td class=n>{pid}</td><td>{esc(comm)}</td><td class=n>{m}</td>"
                         f"<td class=n>{'-' if g is None else f'{g:+.1f}'}</td>"
                         f"<td class=n>{units.seconds(age)}</td></tr>")
        parts.append("</table>")

    parts.append("<h2>Sockets by state</h2>")
    parts.append(svg.line_chart("TCP sockets by state", state_series(db), unit="sockets"))
    parts.append("<h2>Top processes' CLOSE_WAIT</h2>")
    cw = [(f"{comm} ({pid})", downsample(history_db.proc_points(db, pid, "close_wait", None)))
          for pid, comm, _m in tops]
    parts.append(svg.line_chart("CLOSE_WAIT sockets per process", cw, unit="sockets"))
    parts.append("<h2>File descriptors vs limit</h2>")
    fd_series, dashed = [], []
    for pid, comm, _m in tops[:4]:
        fd_series.append((f"{comm} ({pid}) fds", proc_series(db, pid, "fds")))
        name = f"{comm} ({pid}) limit"
        fd_series.append((name, proc_series(db, pid, "fd_limit")))
        dashed.append(name)
    parts.append(svg.line_chart("open fds and RLIMIT_NOFILE", fd_series, dashed=dashed,
                                unit="fds"))
    parts.append("<h2>Host limits</h2>")
    # 0-100 at least: the share of a limit, where 0.07 % must look empty, not full
    parts.append(svg.line_chart("conntrack and file handles use", host_use(db), unit="%",
                                y_range=(0.0, 100.0)))
    parts.append("<h2>Counter rates</h2>")
    parts.append(svg.line_chart("TCP counters", counter_rates(db), unit="per second"))
    parts.append("<h2>Findings</h2>")
    spans = finding_spans(db)
    doctor_ran = db.execute("SELECT count(*) FROM samples WHERE doctor = 1").fetchone()[0]
    parts.append(svg.timeline("findings over time", spans, t0, t1))
    if not doctor_ran:
        parts.append("<p class=note>The doctor did not run while recording: no findings.</p>")
    parts.append("<p class=note>Generated by halfopen; self-contained, no network fetches."
                 "</p></body></html>")
    return "".join(parts)
