"""SQLite history: append across restarts, one writer, crash safety, foreign files."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from tests.helpers import start_halfopen, wait_for

from halfopen.errors import UsageError
from halfopen.watch import history_db

from .conftest import ROOT, run_halfopen, stop
from .samples import finding, make


def count(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM samples").fetchone()[0]
    except sqlite3.OperationalError:  # the writer has created the file, not yet its tables
        return 0
    finally:
        db.close()


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_appends_across_restarts_and_fits_growth(tmp_path):
    path = str(tmp_path / "h.db")
    rec = history_db.Recorder.open(path)
    for i in range(5):  # 12 CLOSE_WAIT more per 30 s: 24 per minute
        rec.append(make(1000.0 + 30 * i, close_wait=100 + 12 * i,
                        cookies={i + 1: (4242, 5.0)}, findings=[finding()]))
    rec.close()
    rec = history_db.Recorder.open(path)
    rec.append(make(1150.0, close_wait=160, cookies={1: (4242, 0.0)}))
    rec.close()
    assert count(path) == 6
    with history_db.closing_reader(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == history_db.SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert history_db.growth_per_minute(db, 4242) == pytest.approx(24.0)
        assert history_db.growth_per_minute(db, 4242, "fds") == pytest.approx(24.0)
        assert history_db.growth_per_minute(db, 99999) is None
        # cookie 1 was first seen at t=1000 with a FIN 5 s before: 155 s at t=1150
        assert history_db.oldest_close_wait_age(db, 4242) == pytest.approx(155.0)
        assert db.execute("SELECT count(*) FROM findings").fetchone()[0] == 5


def test_retention_drops_old_samples_only(tmp_path):
    path = str(tmp_path / "h.db")
    rec = history_db.Recorder.open(path, retention_s=100)
    for i in range(20):
        rec.append(make(10_000.0 + 10 * i, close_wait=i))
    rec.prune(10_190.0)
    rec.close()
    with history_db.closing_reader(path) as db:
        t_min, n = db.execute("SELECT min(t), count(*) FROM samples").fetchone()
        assert t_min >= 10_090.0 and n == 11
        orphans = db.execute("SELECT count(*) FROM proc_states WHERE sample_id NOT IN"
                             " (SELECT id FROM samples)").fetchone()[0]
        assert orphans == 0


def test_foreign_and_junk_files_are_refused_untouched(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all\n" * 10)
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE customers(id INTEGER)")
    db.commit()
    db.close()
    for path in (junk, other):
        before = digest(path)
        r = run_halfopen("watch", "--once", "--no-doctor", "--record", str(path))
        assert r.returncode == 64, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "untouched" in r.stderr
        assert "Traceback" not in r.stderr
        assert digest(path) == before
        r = run_halfopen("report", str(path), "--html", str(tmp_path / "o.html"))
        assert r.returncode == 64 and digest(path) == before
    with pytest.raises(UsageError):
        history_db.open_reader(str(tmp_path / "missing.db"))


def test_second_writer_gets_a_clear_error(tmp_path):
    path = str(tmp_path / "h.db")
    first = start_halfopen("watch", "--no-doctor", "--interval", "0.3", "--record", path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        wait_for("first writer's samples", lambda: os.path.exists(path) and count(path) >= 2)
        r = run_halfopen("watch", "--once", "--no-doctor", "--record", path)
        assert r.returncode == 3, r.stderr
        line = r.stderr.strip()
        assert "\n" not in line and f"being recorded by pid {first.pid}" in line
        n = count(path)
        wait_for("first writer to carry on", lambda: count(path) > n)
    finally:
        stop(first)
    assert first.returncode == 0, first.stderr.read()
    # the lock died with the writer: a new one appends
    before = count(path)
    assert run_halfopen("watch", "--once", "--no-doctor", "--record", path).returncode == 0
    assert count(path) == before + 1


WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from halfopen.watch import history_db
    from watch.samples import make
    rec = history_db.Recorder.open({path!r})
    i = 0
    while True:
        sid = rec.append(make(time.time(), close_wait=i, cookies={{j: (4242, 1.0) for j in range(1, i + 2)}}))
        print(sid, flush=True)
        i += 1
""")


def test_writer_killed_mid_run_loses_at_most_the_sample_in_flight(tmp_path):
    path = str(tmp_path / "h.db")
    code = WRITER.format(tests=str(ROOT / "tests"), path=path)
    for round_ in range(3):  # kill at three different moments; the file keeps growing
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        acked: list[int] = []
        try:
            deadline = time.monotonic() + 15
            while len(acked) < 30 + 17 * round_ and time.monotonic() < deadline:
                acked.append(int(proc.stdout.readline()))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
            acked += [int(x) for x in proc.stdout.read().split()]  # printed before it died
        finally:
            stop(proc)
        with history_db.closing_reader(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            ids = {r[0] for r in db.execute("SELECT id FROM samples")}
        assert set(acked) <= ids  # every acknowledged sample survived
        unacked = {i for i in ids if i > max(acked)}
        assert len(unacked) <= 1  # at most the one in flight got committed unacknowledged
