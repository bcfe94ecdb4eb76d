"""Files halfopen reads on a user's word: snapshots, findings, histories, middlebox lists,
web configs — truncated, bit-flipped, mistyped, deeply nested, huge.

Seeds are the recorded doctor cases (tests/doctor/cases) and a history written
by the real Recorder; each example mutates one and runs the command that reads
it, in-process.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path

import inputs
import pytest
import values as v
from harness import FUZZ, TARGET_TIMEOUT_S, check
from hypothesis import given
from hypothesis import strategies as st

from halfopen.diagnose import report
from halfopen.errors import HalfopenError
from halfopen.model.snapshot import Snapshot
from halfopen.watch import history_db
from halfopen.watch.serving import webconfig

pytestmark = pytest.mark.timeout(TARGET_TIMEOUT_S)

SEEDS = inputs.small_cases()
FINDINGS = [report.diagnose(Snapshot.from_dict(s)).to_dict() for s in SEEDS]


# ---------------------------------------------------------------- mutations

@st.composite
def mutated(draw, seeds: list) -> object:
    """A seed document with 1-4 values replaced, removed or added at random places."""
    doc = copy.deepcopy(seeds[draw(st.integers(0, len(seeds) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        parent, key, node = None, None, doc
        while isinstance(node, (dict, list)) and node and draw(st.integers(0, 4)):
            keys = sorted(node) if isinstance(node, dict) else range(len(node))
            parent, key = node, list(keys)[draw(st.integers(0, len(keys) - 1))]
            node = parent[key]
        op = draw(st.integers(0, 3))
        if parent is None:
            return draw(v.json_values())
        if op == 0 and isinstance(parent, dict):
            del parent[key]
        elif op == 1 and isinstance(node, dict):
            node[draw(st.sampled_from(["x", "pid", "state", "schema", ""]))] = draw(v.json_values())
        else:
            parent[key] = draw(v.json_values())
    return doc


@st.composite
def damaged_bytes(draw, data: bytes) -> bytes:
    """Truncated, bit-flipped or spliced bytes of a good file."""
    op = draw(st.integers(0, 2))
    if op == 0:
        return data[:draw(st.integers(0, len(data)))]
    buf = bytearray(data)
    if op == 1:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(buf)
    i = draw(st.integers(0, len(buf)))
    return bytes(buf[:i]) + draw(st.binary(max_size=40)) + bytes(buf[i:])


SPECIAL = [b"", b"null", b"[]", b"{}", b"[" * 100000, b'{"a":' * 5000, b"1" * 5000,
           b'{"schema": "halfopen.snapshot/1"}', b"\xff\xfe\x00", b"NaN", b"[1e999]",
           b'{"schema": "halfopen.snapshot/1", "sockets": ' + b"[" * 900 + b"]" * 900 + b"}"]


def documents(seeds: list) -> st.SearchStrategy[bytes]:
    good = [json.dumps(s).encode() for s in seeds]
    return st.one_of(
        mutated(seeds).map(lambda d: json.dumps(d).encode("utf-8", "surrogatepass")),
        st.sampled_from(good).flatmap(damaged_bytes),
        st.sampled_from(SPECIAL))


# ---------------------------------------------------------------- targets

def test_fuzz_snapshot_files(work):
    path = str(work / "snapshot.json")

    @FUZZ
    @given(documents(SEEDS), st.sampled_from([["-v"], ["--json"], ["--json", "--pid", "1"],
                                              ["--json", "--port", "22"],
                                              ["--json", "--min-age", "0"]]))
    def one(data: bytes, extra: list[str]) -> None:
        Path(path).write_bytes(data)
        check(["doctor", "--snapshot", path, *extra])

    one()


def test_fuzz_findings_files(work):
    path = str(work / "findings.json")

    @FUZZ
    @given(documents(FINDINGS), st.sampled_from([[], ["--json"], ["close-wait-leak"],
                                                 ["--persist", "--sysctl-file",
                                                  str(work / "sysctl.conf")]]))
    def one(data: bytes, extra: list[str]) -> None:
        Path(path).write_bytes(data)
        check(["fix", "--findings", path, "--journal", str(work / "journal"), *extra])
        assert not (work / "journal").exists() and not (work / "sysctl.conf").exists()

    one()


def _history_seed(path: Path) -> bytes:
    from watch.samples import finding, make  # noqa: PLC0415 - tests/watch helpers
    rec = history_db.Recorder.open(str(path))
    try:
        for i in range(6):
            rec.append(make(1000.0 + 10 * i, close_wait=5 * i, findings=[finding()],
                            cookies={j: (4242, 1.0) for j in range(1, i + 2)}))
    finally:
        rec.close()
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode = DELETE")  # one self-contained file to damage
    db.close()
    return path.read_bytes()


TABLES = {"samples": ["t", "host", "conntrack_count", "file_nr", "file_max", "doctor"],
          "proc_states": ["pid", "comm", "state", "n"],
          "proc_fds": ["pid", "fds", "fd_limit", "oldest_close_wait_s"],
          "state_counts": ["netns", "state", "n"], "counters": ["name", "value"],
          "findings": ["id", "severity", "title", "subject"],
          "listeners": ["addr", "port", "accept_queue", "backlog"],
          "close_wait_seen": ["pid", "fin_at", "first_seen", "last_seen"],
          "meta": ["value"]}
CELLS = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=10),
                  st.binary(max_size=10), st.sampled_from(["{", "[]", "null", '{"pid": "x"}',
                                                           "nan", "1e999", "²"]))


@st.composite
def mistyped_rows(draw) -> list[tuple[str, str, object]]:
    """(table, column, value) updates: the types SQLite lets any cell take."""
    tables = sorted(TABLES)
    out = []
    for _ in range(draw(st.integers(1, 4))):
        table = tables[draw(st.integers(0, len(tables) - 1))]
        column = TABLES[table][draw(st.integers(0, len(TABLES[table]) - 1))]
        out.append((table, column, draw(CELLS)))
    return out


def test_fuzz_history_files(work):
    seed = _history_seed(work / "seed.db")
    snap = work / "snap.json"
    snap.write_text(json.dumps(dict(SEEDS[0], processes=[
        {"pid": 4242, "comm": "leaky", "fd_count": 10, "socket_inodes": []}])))
    path = work / "history.db"

    @FUZZ
    @given(st.one_of(damaged_bytes(seed).map(lambda b: ("bytes", b)),
                     mistyped_rows().map(lambda r: ("rows", r))),
           st.sampled_from(["report", "doctor", "record"]))
    def one(damage: tuple, reader: str) -> None:
        kind, what = damage
        if kind == "bytes":
            path.write_bytes(what)
        else:
            path.write_bytes(seed)
            db = sqlite3.connect(str(path))
            try:
                for table, column, value in what:
                    db.execute(f"UPDATE OR IGNORE {table} SET {column} = ?", (value,))
                db.commit()
            finally:
                db.close()
        for extra in (path.with_name("history.db-wal"), path.with_name("history.db-shm"),
                      path.with_name("history.db-journal")):
            if extra.exists():
                extra.unlink()
        if reader == "report":
            check(["report", str(path)])
        elif reader == "doctor":
            check(["doctor", "--snapshot", str(snap), "--history", str(path)])
        else:  # watch --record: refuse a damaged file before writing, or append to it
            before = path.read_bytes()
            try:
                rec = history_db.Recorder.open(str(path))
            except HalfopenError:
                assert path.read_bytes() == before, "a refused history was changed"
                return
            rec.close()

    one()


MIDDLEBOX_WORDS = ["aws-nlb", "gcp-lb", "azure-lb", "aws-alb", "corp", "300", "0", "-1", "²",
                   "flow", "proxy", "bogus", "#", "1e3", "9" * 20, "99999999999"]


def test_fuzz_middlebox_files_and_words(work):
    path = str(work / "boxes.txt")
    snap = str(work / "snap-mb.json")
    Path(snap).write_text(json.dumps(SEEDS[0]))
    line = st.lists(st.one_of(st.sampled_from(MIDDLEBOX_WORDS), v.text()), max_size=4).map(
        " ".join)

    @FUZZ
    @given(st.lists(line, max_size=6).map("\n".join), st.lists(
        st.one_of(st.sampled_from(MIDDLEBOX_WORDS), v.text()), max_size=2))
    def one(text: str, words: list[str]) -> None:
        Path(path).write_bytes(text.encode("utf-8", "surrogatepass"))
        argv = ["doctor", "--json", "--snapshot", snap, "--middlebox-file", path]
        for w in words:
            argv += ["--middlebox", w]
        check(argv)

    one()


WEB_LINES = ["tls_server_config:", "  cert_file: c.pem", "  key_file: k.pem",
             "  client_auth_type: RequireAndVerifyClientCert", "  min_version: TLS13",
             "basic_auth_users:", "  u: $2b$04$" + "a" * 53, "  'q u': \"x\"", "  - item",
             "http_server_config:", "a: [1, 2]", "b: &x y", "\tc: 1", "   d: 2", "e:f", "---",
             "# comment", "'k: v", "\"bad\\q\": 1"]


def test_fuzz_web_config_files(work):
    """The exporter's --web.config.file: one line (UsageError) or an Access, nothing else."""
    path = str(work / "web.yml")
    line = st.one_of(st.sampled_from(WEB_LINES), v.text())

    @FUZZ
    @given(st.one_of(st.lists(line, max_size=8).map("\n".join).map(
        lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=200)))
    def one(data: bytes) -> None:
        Path(path).write_bytes(data)
        try:
            access = webconfig.load(path)
        except HalfopenError as exc:
            assert "\n" not in str(exc).strip()
            return
        assert isinstance(access, webconfig.Access)

    one()


def test_fuzz_listen_values():
    from halfopen.cli.exporter_cmd import parse_listen  # noqa: PLC0415

    @FUZZ
    @given(st.one_of(st.sampled_from(v.BAD_LISTEN), v.text(), st.builds(
        lambda h, p: f"{h}:{p}", st.sampled_from(["127.0.0.1", "[::1]", "", "a.b", "é"]),
        v.ints())))
    def one(text: str) -> None:
        try:
            host, port = parse_listen(text)
        except HalfopenError:
            return
        assert 0 < port < 65536 and host.isascii()

    one()
