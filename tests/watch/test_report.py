"""`halfopen report`: one self-contained page, its charts drawn by headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from halfopen.watch import history_db
from halfopen.watch.presentation import svg

from .conftest import ARTIFACTS, run_halfopen
from .samples import finding, make

CHROMIUM = "/usr/bin/chromium"


def record(path: str) -> None:
    rec = history_db.Recorder.open(path)
    t0 = 1_700_000_000.0
    for i in range(120):  # 20 minutes at 10 s: a leak that grows, a finding that comes and goes
        found = [finding()] if 30 <= i < 90 else []
        cookies = {c: (4242, 2.0) for c in range(1, 2 * i + 2)}
        rec.append(make(t0 + 10 * i, close_wait=2 * i, counter=3 * i * i, findings=found,
                        cookies=cookies))
    rec.close()


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=3000", *args],
        capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    db = str(tmp_path / "h.db")
    record(db)
    out = tmp_path / "report.html"
    r = run_halfopen("report", db, "--html", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    # self-contained: nothing to fetch
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "url(" not in page and "@import" not in page
    assert page.count("<svg") >= 6

    dom = chromium(tmp_path, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    charts = int(re.search(r'data-charts="(\d+)"', body).group(1))
    drawn = int(re.search(r'data-charts-drawn="(\d+)"', body).group(1))
    assert charts >= 6 and drawn == charts, body
    # every chart has marks: lines for series, bars for the finding's span
    marks = [int(m) for m in re.findall(r'data-marks="(\d+)"', dom.stdout)]
    assert len(marks) == charts and all(m > 0 for m in marks), marks
    assert "close-wait-leak" in dom.stdout and "leaky" in dom.stdout

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "watch-report.png"
    if shot.exists():
        shot.unlink()
    s = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,2400", out.as_uri())
    assert s.returncode == 0 and shot.exists(), s.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_report_of_an_empty_history_says_so(tmp_path):
    db = str(tmp_path / "h.db")
    history_db.Recorder.open(db).close()
    r = run_halfopen("report", db)
    assert r.returncode == 0 and "holds no samples" in r.stdout


def test_a_flat_series_beyond_two_to_the_53_still_draws():
    """A history's fd limit of -2**53 (damage the fuzz suite wrote): `v0 + 1` is v0 there."""
    flat = [(1000.0, -9007199254740996.0), (1010.0, -9007199254740996.0)]
    out = svg.line_chart("fds", [("limit", flat)])
    assert out.startswith("<svg") and out.endswith("</svg>")
    assert "nan" not in out and "inf" not in out


def test_a_history_whose_index_disagrees_with_its_table_is_refused(tmp_path):
    """Found by the fuzz suite at 20,000 inputs: a bit-flipped history (kept as
    data/damaged-index.db) whose tables pass the type checks, but whose samples_t
    index handed the report a NULL time. The report now checks the indexes too."""
    db = tmp_path / "h.db"
    shutil.copy(Path(__file__).parent / "data" / "damaged-index.db", db)
    r = run_halfopen("report", str(db))
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and "is damaged" in r.stderr and "Traceback" not in r.stderr
