"""`halfopen watch --once` on a real process leaking CLOSE_WAIT sockets."""

from __future__ import annotations

import re

from halfopen.watch import history_db

from .conftest import run_halfopen


def test_once_shows_the_leaking_process(start_leaker):
    leak = start_leaker(initial=37)
    r = run_halfopen("watch", "--once", "--no-doctor", "--top", "50")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "sockets by state" in out and "close_wait" in out
    row = next(line for line in out.splitlines() if re.search(rf"\b{leak.pid}\b.*leaker", line))
    cells = row.split()  # borderless columns (watch.presentation.view)
    assert cells[:3] == [str(leak.pid), "leaker", "37"], row
    assert "listeners" in out and f":{leak.port}" in out
    assert "conntrack" in out and "file handles" in out


def test_recorded_once_runs_give_growth_per_minute(start_leaker, tmp_path):
    leak = start_leaker(initial=5, rate=20, max_=400)
    db = str(tmp_path / "h.db")
    for _ in range(4):
        r = run_halfopen("watch", "--once", "--no-doctor", "--record", db)
        assert r.returncode == 0, r.stderr
    growth = history_db.growth_per_minute(db, leak.pid)
    assert growth is not None and 300 < growth < 2400, growth  # 20/s = 1200/min, loosely
    assert history_db.oldest_close_wait_age(db, leak.pid) > 0
    r = run_halfopen("watch", "--once", "--no-doctor", "--record", db, "--top", "50")
    row = next(line for line in r.stdout.splitlines() if str(leak.pid) in line and "leaker" in line)
    assert "+" in row  # growth per minute shown with its sign


def test_bad_interval_is_one_line_exit_64():
    r = run_halfopen("watch", "--once", "--interval", "soon")
    assert r.returncode == 64
    assert r.stderr.count("\n") == 1 and "interval" in r.stderr


def test_once_with_the_doctor_shows_its_findings_section(start_leaker):
    start_leaker(initial=5)
    r = run_halfopen("watch", "--once", "--top", "5", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "doctor failed" not in r.stdout
    from halfopen.watch.findings import Doctor
    if Doctor().available:
        assert "findings" in r.stdout and "doctor not installed" not in r.stdout
    else:
        assert "doctor not installed" in r.stdout
