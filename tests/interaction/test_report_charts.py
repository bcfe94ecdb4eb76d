"""The HTML report's charts: round value ticks (1-2-5 steps), whole-minute time ticks, a
use (%) axis of 0-100 (a nearly empty table looks empty), and a legend of the severity
colours, which headless Chromium draws (checked on the pixels of a screenshot)."""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from halfopen.watch import history_db
from halfopen.watch.presentation import svg
from watch.conftest import ARTIFACTS, run_halfopen
from watch.samples import finding, make

CHROMIUM = "/usr/bin/chromium"
T0 = 1_700_000_000.0


def record(path: str) -> None:
    rec = history_db.Recorder.open(path)
    for i in range(120):  # 20 minutes at 10 s; the fd use is ~0.1 % of the table
        found = [finding(severity="warning")] if 30 <= i < 90 else []
        rec.append(make(T0 + 10 * i, close_wait=2 * i + 3, counter=3 * i * i, findings=found))
    rec.close()


def charts(page: str) -> dict[str, str]:
    return {re.search(r'aria-label="([^"]*)"', c).group(1): c
            for c in re.findall(r"<svg class=\"chart\".*?</svg>", page)}


def tick_values(chart: str) -> list[float]:
    scale = {"k": 1e3, "M": 1e6}
    out = []
    for text in re.findall(r'<text class="ytick"[^>]*>([^<]*)</text>', chart):
        out.append(float(text.rstrip("kM")) * scale.get(text[-1:], 1))
    return out


def is_round_step(step: float) -> bool:
    """1, 2 or 5 times a power of ten."""
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, m) for m in (1, 2, 5, 10))


def test_axes_have_round_ticks_and_use_is_0_to_100(tmp_path):
    db = str(tmp_path / "h.db")
    record(db)
    r = run_halfopen("report", db)
    assert r.returncode == 0, r.stderr
    found = charts(r.stdout)
    assert len(found) >= 6
    for title, chart in found.items():
        values = tick_values(chart)
        if not values:
            continue  # the timeline: times only
        steps = {round(b - a, 9) for a, b in zip(values, values[1:])}
        assert len(steps) == 1 and is_round_step(steps.pop()), (title, values)
        assert 3 <= len(values) <= svg.MAX_TICKS, (title, values)
        times = re.findall(r'<text class="xtick"[^>]*>([^<]*)</text>', chart)
        assert times and all(re.fullmatch(r"\d\d:\d\d", t) for t in times), (title, times)
    use = found["conntrack and file handles use"]
    assert tick_values(use) == [0, 20, 40, 60, 80, 100]
    # the CLOSE_WAIT chart (3..241 sockets) ends on a round tick above its top
    cw = tick_values(found["CLOSE_WAIT sockets per process"])
    assert cw[0] == 0 and cw[-1] >= 241 and cw[-1] - cw[-2] < 241 * 0.5, cw


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows (RGB or RGBA, 8 bits) of a non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color)
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    rows, prev, stride = [], bytearray(width * bpp), width * bpp
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def colours(png: Path) -> set[tuple[int, int, int]]:
    _w, bpp, rows = decode_png(png.read_bytes())
    return {tuple(row[i:i + 3]) for row in rows for i in range(0, len(row), bpp)}


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", *args],
        capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="chromium not installed")
def test_chromium_draws_the_severity_legend(tmp_path):
    """Only warnings recorded: the critical red and the info blue on the screenshot can
    come only from the legend."""
    bars = svg.timeline("findings over time", [("close-wait-leak leaky", "warning",
                                                 [(T0 + 100, T0 + 500)])], T0, T0 + 600)
    page = tmp_path / "legend.html"
    page.write_text(f"<!DOCTYPE html><html><body style='margin:0'>{bars}</body></html>")
    shot = tmp_path / "legend.png"
    s = chromium(tmp_path, f"--screenshot={shot}", "--window-size=760,120", page.as_uri())
    assert s.returncode == 0 and shot.exists(), s.stderr[-2000:]
    seen = colours(shot)
    for severity, colour in svg.SEVERITY_COLORS.items():
        assert rgb(colour) in seen, (severity, colour)
    for word in svg.SEVERITY_COLORS:
        assert f">{word}</text>" in bars

    # and the whole report, for a person to look at (CI keeps test-artifacts/)
    db = str(tmp_path / "h.db")
    record(db)
    out = tmp_path / "report.html"
    assert run_halfopen("report", db, "--html", str(out)).returncode == 0
    ARTIFACTS.mkdir(exist_ok=True)
    full = ARTIFACTS / "report-charts.png"
    s = chromium(tmp_path, f"--screenshot={full}", "--window-size=1000,2400", out.as_uri())
    assert s.returncode == 0 and full.stat().st_size > 20_000, s.stderr[-2000:]
    assert rgb(svg.SEVERITY_COLORS["critical"]) in colours(full)  # the legend, again
