"""History: samples appended to an SQLite file, and the reader API over it.

One writer per file, any number of readers. The writer holds an exclusive
flock(2) on the database file for its whole life; a second writer is told who
holds it and stops. The kernel drops the lock when the holder dies, even by
SIGKILL, so there is never a stale lock to clean up. Each sample is one
transaction in WAL mode: a writer killed mid-run loses at most the sample in
flight. An existing file is only ever appended to; a file that is not ours
(not SQLite, or SQLite with another application_id) is refused untouched.

Schema (PRAGMA user_version = SCHEMA_VERSION, application_id = APP_ID):

    meta(key, value)                        app, created_at, host, writer_pid
    samples(id, t, host, conntrack_count, conntrack_max, file_nr, file_max, doctor)
    state_counts(sample_id, netns, state, n)
    proc_states(sample_id, pid, comm, state, n)
    proc_fds(sample_id, pid, comm, fds, fd_limit, oldest_close_wait_s)
    listeners(sample_id, netns, addr, port, pid, comm, accept_queue, backlog, syn_recv)
    counters(sample_id, name, value)
    findings(sample_id, id, severity, title, subject)     subject: JSON
    close_wait_seen(cookie, pid, fin_at, first_seen, last_seen)

Reader API (the doctor's --history uses these):

    growth_per_minute(db, pid, state="close_wait", window_s=600) -> float | None
    oldest_close_wait_age(db, pid) -> float | None
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

from .. import fsio
from ..errors import HalfopenError, UsageError
from ..model.history import History
from . import trend
from .sample import Sample

SCHEMA_VERSION = 1
APP_ID = 0x684F706E  # "hOpn"
SQLITE_MAGIC = b"SQLite format 3\x00"
DEFAULT_RETENTION_S = 7 * 86400
PRUNE_EVERY_S = 60.0
_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite creates these next to the database

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE samples(id INTEGER PRIMARY KEY, t REAL NOT NULL, host TEXT,
  conntrack_count INTEGER, conntrack_max INTEGER, file_nr INTEGER, file_max INTEGER,
  doctor INTEGER NOT NULL DEFAULT 0);
CREATE INDEX samples_t ON samples(t);
CREATE TABLE state_counts(sample_id INTEGER, netns TEXT, state TEXT, n INTEGER,
  PRIMARY KEY(sample_id, netns, state)) WITHOUT ROWID;
CREATE TABLE proc_states(sample_id INTEGER, pid INTEGER, comm TEXT, state TEXT, n INTEGER,
  PRIMARY KEY(sample_id, pid, state)) WITHOUT ROWID;
CREATE INDEX proc_states_pid ON proc_states(pid, state, sample_id);
CREATE TABLE proc_fds(sample_id INTEGER, pid INTEGER, comm TEXT, fds INTEGER,
  fd_limit INTEGER, oldest_close_wait_s REAL, PRIMARY KEY(sample_id, pid)) WITHOUT ROWID;
CREATE INDEX proc_fds_pid ON proc_fds(pid, sample_id);
CREATE TABLE listeners(sample_id INTEGER, netns TEXT, addr TEXT, port INTEGER, pid INTEGER,
  comm TEXT, accept_queue INTEGER, backlog INTEGER, syn_recv INTEGER);
CREATE INDEX listeners_sample ON listeners(sample_id);
CREATE TABLE counters(sample_id INTEGER, name TEXT, value INTEGER,
  PRIMARY KEY(sample_id, name)) WITHOUT ROWID;
CREATE TABLE findings(sample_id INTEGER, id TEXT, severity TEXT, title TEXT, subject TEXT);
CREATE INDEX findings_sample ON findings(sample_id);
CREATE TABLE close_wait_seen(cookie INTEGER PRIMARY KEY, pid INTEGER, fin_at REAL,
  first_seen REAL, last_seen REAL);
CREATE INDEX close_wait_seen_pid ON close_wait_seen(pid, last_seen);
"""
# Columns the writer leaves NULL: the Optional fields of Sample, ProcSample,
# Listener and HostStats (watch/sample.py, watch/hostfacts.py). Any other NULL
# is damage.
_NULLABLE = {
    "samples": ("conntrack_count", "conntrack_max", "file_nr", "file_max"),
    "proc_fds": ("fds", "fd_limit", "oldest_close_wait_s"),
    "listeners": ("pid", "comm"),
}
_TABLES = ("state_counts", "proc_states", "proc_fds", "listeners", "counters", "findings")


class HistoryError(HalfopenError):
    """The history file cannot be used (exit 3)."""


class HistoryBusy(HistoryError):
    """Another writer records into the file."""


def _check_file(path: str) -> bool:
    """True if `path` exists and is non-empty; refuse what is not SQLite.

    Opened the one safe way first (fsio.open_regular: lstat, then O_NONBLOCK|
    O_NOFOLLOW and fstat), because sqlite3.connect opens blocking: a FIFO
    planted there would hang `watch --record`, `doctor --history` and `report`
    for good. A symlink, FIFO, device or directory is one line, exit 64.
    """
    fd = fsio.open_regular(path, "history")
    if fd is None:
        return False
    try:
        with os.fdopen(fd, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise HistoryError(f"cannot read {path}: {exc.strerror}") from None
    if head and head != SQLITE_MAGIC:
        raise UsageError(f"{path} is not a halfopen history (not an SQLite file); left untouched")
    return bool(head)


def _check_schema(db: sqlite3.Connection, path: str) -> bool:
    """True if the database holds our schema; False if it is empty. Raise if foreign."""
    try:
        app = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # a damaged schema's text
        raise UsageError(f"{path} is not a halfopen history ({exc}); left untouched") from None
    if tables == 0 and app == 0:
        return False
    if app != APP_ID:
        raise UsageError(f"{path} is an SQLite file of another application "
                         f"(application_id {app:#x}); left untouched")
    if version > SCHEMA_VERSION:
        raise UsageError(f"{path} was written by a newer halfopen (schema {version}, "
                         f"this one reads up to {SCHEMA_VERSION})")
    return True


def _check_intact(db: sqlite3.Connection, path: str) -> None:
    """PRAGMA quick_check: the b-trees and their pages are sound (O(size), no index compare)."""
    rows = db.execute("PRAGMA quick_check").fetchall()
    if rows != [("ok",)]:
        raise HistoryError(f"{path} is damaged ({rows[0][0]}); left untouched: record into "
                           "a new file")


class Recorder:
    """The one writer of a history file. Use `Recorder.open(path)`; close() when done."""

    def __init__(self, path: str, db: sqlite3.Connection, lock_fd: int, retention_s: float):
        self.path = path
        self.db = db
        self._lock_fd = lock_fd
        self.retention_s = retention_s
        self._last_prune = 0.0

    @classmethod
    def open(cls, path: str, retention_s: float = DEFAULT_RETENTION_S) -> Recorder:
        for name in (path, *(path + s for s in _SIDE_FILES)):
            fsio.check_target(name)  # a planted symlink is refused, not followed
        _check_file(path)
        try:  # 0600 in a 0700 directory when we create them; ours, one link
            lock_fd = fsio.open_append(path, flags=os.O_RDWR)
        except fsio.WriteFailed as exc:
            raise HistoryError(str(exc)) from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            holder = _writer_pid(path)
            who = f" by pid {holder}" if holder else ""
            raise HistoryBusy(f"{path} is being recorded{who}; one writer per file "
                              "(read it with `halfopen report`)") from None
        db = None
        try:
            # nofollow=1: SQLite refuses a symlink too (SQLITE_OPEN_NOFOLLOW, 3.31+)
            db = sqlite3.connect(f"file:{urllib.parse.quote(path)}?nofollow=1", uri=True,
                                 isolation_level=None, check_same_thread=False)
            if os.stat(path, follow_symlinks=False).st_ino != os.fstat(lock_fd).st_ino:
                db.close()
                raise fsio.UnsafePath(f"{path} was replaced while opening it; left alone")
            ours = _check_schema(db, path)
            if ours:
                _check_intact(db, path)  # before the first write: never add to a damaged file
            else:
                db.execute(f"PRAGMA application_id = {APP_ID}")
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
                db.execute("INSERT INTO meta VALUES ('app', 'halfopen'), ('created_at', ?),"
                           " ('host', ?)", (str(time.time()), os.uname().nodename))
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise HistoryError(f"{path}: cannot switch to WAL mode (got {mode})")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('writer_pid', ?)", (str(os.getpid()),))
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            _close(db, lock_fd)
            raise damaged(path, exc) from None
        except BaseException:
            _close(db, lock_fd)
            raise
        return cls(path, db, lock_fd, retention_s)

    def append(self, s: Sample) -> int:
        """Write one sample in one transaction; return its id."""
        try:
            return self._append(s)
        except sqlite3.Error as exc:
            raise (HistoryError(f"cannot write {self.path}: {exc}")
                   if isinstance(exc, sqlite3.OperationalError) else damaged(self.path, exc)) \
                from None

    def _append(self, s: Sample) -> int:
        db = self.db
        f = s.facts
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT INTO samples(t, host, conntrack_count, conntrack_max, file_nr, file_max,"
                " doctor) VALUES (?,?,?,?,?,?,?)",
                (s.t, s.host, f.conntrack_count, f.conntrack_max, f.file_nr, f.file_max,
                 int(s.findings is not None)))
            sid = cur.lastrowid
            assert sid is not None  # set by every INSERT
            db.executemany("INSERT INTO state_counts VALUES (?,?,?,?)",
                           [(sid, ns, st, n) for (ns, st), n in s.states.items()])
            db.executemany("INSERT INTO proc_states VALUES (?,?,?,?,?)",
                           [(sid, p.pid, p.comm, st, n) for p in s.processes.values()
                            for st, n in p.states.items()])
            db.executemany("INSERT INTO proc_fds VALUES (?,?,?,?,?,?)",
                           [(sid, p.pid, p.comm, p.fds, p.fd_limit, p.oldest_close_wait_s)
                            for p in s.processes.values()])
            db.executemany("INSERT INTO listeners VALUES (?,?,?,?,?,?,?,?,?)",
                           [(sid, li.netns, li.addr, li.port, li.pid, li.comm, li.accept_queue,
                             li.backlog, li.syn_recv) for li in s.listeners])
            db.executemany("INSERT INTO counters VALUES (?,?,?)",
                           [(sid, k, v) for k, v in f.counters.items()])
            if s.findings:
                db.executemany("INSERT INTO findings VALUES (?,?,?,?,?)",
                               [(sid, x.id, x.severity, x.title, json.dumps(x.subject.to_dict()))
                                for x in s.findings])
            db.executemany(
                "INSERT INTO close_wait_seen VALUES (?,?,?,?,?) ON CONFLICT(cookie) DO UPDATE"
                " SET pid = excluded.pid, last_seen = excluded.last_seen,"
                " fin_at = min(fin_at, excluded.fin_at)",
                [(cookie, pid, s.t - (age or 0.0), s.t, s.t)
                 for cookie, (pid, age) in s.close_wait.items()])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if s.t - self._last_prune >= PRUNE_EVERY_S:
            self.prune(s.t)
        return sid

    def prune(self, now: float) -> int:
        """Drop samples older than the retention; return how many went."""
        self._last_prune = now
        cutoff = now - self.retention_s
        db = self.db
        row = db.execute("SELECT max(id) FROM samples WHERE t < ?", (cutoff,)).fetchone()
        if row[0] is None:
            return 0
        last = row[0]
        db.execute("BEGIN IMMEDIATE")
        for table in _TABLES:
            db.execute(f"DELETE FROM {table} WHERE sample_id <= ?", (last,))
        n = db.execute("DELETE FROM samples WHERE id <= ?", (last,)).rowcount
        db.execute("DELETE FROM close_wait_seen WHERE last_seen < ?", (cutoff,))
        db.execute("COMMIT")
        db.execute("PRAGMA incremental_vacuum")
        return n

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            os.close(self._lock_fd)


def _close(db: sqlite3.Connection | None, lock_fd: int) -> None:
    if db is not None:
        db.close()
    os.close(lock_fd)


def _writer_pid(path: str) -> int | None:
    try:
        with closing_reader(path) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'writer_pid'").fetchone()
            return int(row[0]) if row else None
    except (HalfopenError, sqlite3.DatabaseError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def _declared() -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, declared type)] of our own schema (not the file's: it may lie)."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(_SCHEMA)
        tables = [r[0] for r in mem.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [(r[1], r[2]) for r in mem.execute(f"PRAGMA table_info({t})")]
                for t in tables}
    finally:
        mem.close()


def _check_types(db: sqlite3.Connection, path: str) -> None:
    """Every cell holds the type its column declares, in range; else refuse the file.

    SQLite lets any cell hold any type: a damaged or hand-edited history can put
    text where a time is, or 1e999 where a count is. Checked once here so the
    readers and the report never meet them.
    """
    for table, columns in _declared().items():
        bad = []
        for name, kind in columns:
            # INTEGER columns are counts and ids: a REAL there (SQLite stores 3.0 as 3) is
            # damage, and 1e-308 as a limit would turn a use ratio into inf
            ok = {"INTEGER": ["'integer'"], "REAL": ["'integer'", "'real'"]}.get(kind, ["'text'"])
            if name in _NULLABLE.get(table, ()):
                ok.append("'null'")
            test = f"typeof({name}) NOT IN ({', '.join(ok)})"
            # REAL columns are times and ages in seconds: beyond 6e10 (years 69 and 3871) a
            # date cannot be shown; INTEGER ones are counts, at most 64 bits
            top = {"REAL": "6e10", "INTEGER": "9.2e18"}.get(kind)
            bad.append(f"({test} OR abs({name}) > {top})" if top else test)
        row = db.execute(f"SELECT {', '.join(c for c, _k in columns)} FROM {table} "
                         f"WHERE {' OR '.join(bad)} LIMIT 1").fetchone()
        if row is not None:
            raise HistoryError(f"{path} is damaged: table {table} holds a value of the wrong "
                               f"type ({', '.join(repr(x)[:40] for x in row)})")


def open_reader(path: str) -> sqlite3.Connection:
    """Open a history read-only; refuse a missing, foreign or unreadable file."""
    if not _check_file(path):
        raise UsageError(f"{path}: no such history file") if not os.path.lexists(path) else \
            UsageError(f"{path} is empty: not a halfopen history")
    try:  # nofollow=1: a symlink swapped in after the check is refused by SQLite too
        db = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro&nofollow=1", uri=True,
                             check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise HistoryError(f"cannot open {path}: {exc}") from None
    try:
        if not _check_schema(db, path):
            raise UsageError(f"{path} is empty: not a halfopen history")
        _check_types(db, path)
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        db.close()
        raise damaged(path, exc) from None
    except BaseException:
        db.close()
        raise
    return db


def verify(db: sqlite3.Connection, path: str) -> None:
    """Every index agrees with its table (PRAGMA integrity_check), else refuse the file.

    _check_types reads the tables; a query an index covers reads the index
    alone, and a damaged one handed the report a NULL time. The report reads
    every sample anyway, so the full check costs what its own queries do.
    """
    row = db.execute("PRAGMA integrity_check(1)").fetchone()
    if row is None or row[0] != "ok":
        raise damaged(path, sqlite3.DatabaseError(row[0] if row else "no answer"))


@contextmanager
def closing_reader(path: str) -> Iterator[sqlite3.Connection]:
    """A reader; an SQLite error while reading (a damaged page) is one line, exit 3."""
    db = open_reader(path)
    try:
        yield db
    except (sqlite3.Error, UnicodeDecodeError) as exc:  # a TEXT cell that is not UTF-8
        raise damaged(path, exc) from None
    finally:
        db.close()


def damaged(path: str, exc: BaseException) -> HistoryError:
    return HistoryError(f"{path} is damaged ({exc}); `sqlite3 {path} .recover` may save "
                        "what is left")


@contextmanager
def _conn(db: str | sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    if isinstance(db, sqlite3.Connection):
        yield db
    else:
        with closing_reader(db) as conn:
            yield conn


def last_time(db: sqlite3.Connection) -> float | None:
    return db.execute("SELECT max(t) FROM samples").fetchone()[0]


def proc_points(db: str | sqlite3.Connection, pid: int, state: str = "close_wait",
                window_s: float | None = 600.0) -> list[tuple[float, float]]:
    """(t, count) of one process's sockets in `state`, 0 where it held none.

    `state` "fds" gives the process's open fds instead.
    """
    with _conn(db) as conn:
        end = last_time(conn)
        if end is None:
            return []
        start = end - window_s if window_s is not None else float("-inf")
        if state == "fds":
            rows = conn.execute(
                "SELECT s.t, f.fds FROM proc_fds f JOIN samples s ON s.id = f.sample_id"
                " WHERE f.pid = ? AND s.t >= ? AND f.fds IS NOT NULL ORDER BY s.t",
                (pid, start)).fetchall()
        else:
            rows = conn.execute(
                "SELECT s.t, coalesce(ps.n, 0) FROM proc_fds f JOIN samples s ON s.id = f.sample_id"
                " LEFT JOIN proc_states ps ON ps.sample_id = f.sample_id AND ps.pid = f.pid"
                " AND ps.state = ? WHERE f.pid = ? AND s.t >= ? ORDER BY s.t",
                (state, pid, start)).fetchall()
        return [(float(t), float(n)) for t, n in rows]


def growth_per_minute(db: str | sqlite3.Connection, pid: int, state: str = "close_wait",
                      window_s: float | None = 600.0) -> float | None:
    """Least-squares growth per minute of a process's sockets in `state`.

    Over the last `window_s` seconds of the recording (None: all of it);
    None when fewer than two samples hold the process.
    """
    return trend.per_minute(proc_points(db, pid, state, window_s))


def oldest_close_wait_age(db: str | sqlite3.Connection, pid: int,
                          now: float | None = None) -> float | None:
    """Seconds since the FIN of the process's oldest CLOSE_WAIT socket still present.

    Each socket (by cookie) is dated at its first sighting, less tcp_info's
    last_ack_recv then; the earliest such date over all sightings is kept.
    """
    with _conn(db) as conn:
        end = last_time(conn)
        if end is None:
            return None
        row = conn.execute("SELECT min(fin_at) FROM close_wait_seen WHERE pid = ? AND"
                           " last_seen >= ?", (pid, end)).fetchone()
        if row[0] is None:
            return None
        return (now if now is not None else end) - row[0]


def load_history(path: str, pids: list[int], span_s: float = 3600.0) -> History:
    """The doctor's History: per-process close_wait and fd series of the last `span_s`."""
    hist = History(source=path)
    with closing_reader(path) as db:
        for pid in pids:
            for metric in ("close_wait", "fds"):
                for t, v in proc_points(db, pid, metric, span_s):
                    hist.add(pid, metric, t, v)
    return hist
