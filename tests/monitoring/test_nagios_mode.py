"""`halfopen doctor --nagios` as a monitoring plugin: the status line, perfdata in the
plugin format with the rules' own thresholds, the findings as long output, exit
codes 0-3 matching the status, UNKNOWN and exit 3 for every failure, --timeout.
A real CLOSE_WAIT pile in a test namespace; a real Nagios Core: test_nagios_core.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
from tests.helpers import run_halfopen

from halfopen.diagnose import closewait, listen, resources, timewait
from halfopen.diagnose.perfdata import Perf

from .conftest import LEAKER

EXIT = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
# Nagios Plugin Development Guidelines: 'label'=value[UOM];[warn];[crit];[min];[max],
# warn and crit in the range format (10, 10:, ~:10, @10:20)
PERF_ITEM = re.compile(r"(?:'[^']+'|[^\s'=]+)=(-?[0-9.]+)(%|s|ms|us|B|KB|MB|TB|c)?"
                       r"(?:;(@?(?:~|-?[0-9.]*):?-?[0-9.]*)){0,2}(?:;(-?[0-9.]*)){0,2}")
STATUS_LINE = re.compile(r"HALFOPEN (OK|WARNING|CRITICAL|UNKNOWN) - ([^|]+?)(?: \| (.*))?")


def plugin(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_halfopen("doctor", "--nagios", *args, timeout=timeout, env={"COLUMNS": "200"})


def parse(out: str) -> tuple[str, str, dict[str, list[str]], list[str]]:
    first, *long = out.splitlines()
    m = STATUS_LINE.fullmatch(first)
    assert m, first
    perf = {}
    for item in (m.group(3) or "").split():
        assert PERF_ITEM.fullmatch(item), item
        label, _, rest = item.partition("=")
        perf[label] = rest.split(";")
    return m.group(1), m.group(2), perf, long


@pytest.fixture
def close_wait_pile(netns):
    """A leaker in the test namespace holding CLOSE_WAIT sockets: CRITICAL_COUNT + 5."""
    count = closewait.CRITICAL_COUNT + 5
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, str(LEAKER),
                             "--initial", str(count)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("ready "), "leaker did not start"
        yield netns, count, proc
    finally:
        proc.kill()
        proc.wait(10)


def test_a_close_wait_pile_is_critical_with_perfdata(close_wait_pile):
    netns, count, leaker = close_wait_pile
    r = plugin("--netns", netns, "--window", "0", "--min-age", "0")
    status, summary, perf, long = parse(r.stdout)
    assert (status, r.returncode) == ("CRITICAL", 2), r.stdout + r.stderr
    assert r.stderr == ""
    assert "close-wait-leak" in summary and f"pid {leaker.pid}" in r.stdout
    # the rules' own thresholds, as constants: a change of a rule moves its perfdata
    assert perf["close_wait"] == [str(count), "", "", "0"]
    assert perf["close_wait_process_max"] == [str(count), str(closewait.WARN_COUNT),
                                              str(closewait.CRITICAL_COUNT), "0"]
    assert perf["accept_queue_max"][1:] == [f"{100 * listen.FULL_RATIO:g}", "100", "0", "100"]
    tw_max = int(perf["time_wait"][4])
    assert float(perf["time_wait"][1]) == pytest.approx(timewait.TW_WARN * tw_max)
    fmax = int(perf["file_handles"][4])
    assert [float(x) for x in perf["file_handles"][1:3]] == pytest.approx(
        [resources.FD_WARN * fmax, resources.FD_CRITICAL * fmax], abs=0.1)
    assert perf["syn_recv"] == ["0", "", "", "0"]
    # long output: the findings, worst first, one line each
    assert long and long[0].startswith("CRITICAL close-wait-leak: ")
    assert not any(line.startswith("halfopen doctor") for line in long)  # no banner


def test_all_namespaces_one_item_per_label(close_wait_pile):
    """--all-netns: counts summed over the namespaces, one label each, however many pods."""
    _netns, count, _leaker = close_wait_pile
    r = plugin("--all-netns", "--window", "0", "--min-age", "0")
    first = r.stdout.splitlines()[0]
    labels = [item.partition("=")[0] for item in first.partition(" | ")[2].split()]
    assert len(labels) == len(set(labels)) and "close_wait" in labels, first
    _status, _summary, perf, _long = parse(r.stdout)
    assert int(perf["close_wait"][0]) >= count
    assert int(perf["close_wait_process_max"][0]) >= count


def test_exit_code_matches_the_status_on_this_host():
    r = plugin("--window", "0")
    status, _summary, perf, _long = parse(r.stdout)
    assert r.returncode == EXIT[status], r.stdout
    assert {"close_wait", "syn_recv", "time_wait", "file_handles"} <= set(perf)


@pytest.mark.parametrize("args, says", [
    (["--bogus"], "--bogus"),  # click's own wording differs between its versions
    (["--window", "-1"], "--window"),
    (["--netns", "hoM-no-such-namespace"], "unknown network namespace 'hoM-no-such-namespace'"),
    (["--json"], "choose one of --nagios, --json"),
    (["--timeout", "0"], "--timeout"),
])
def test_usage_errors_are_unknown_exit_3_in_one_line(args, says):
    r = plugin(*args)
    assert r.returncode == 3
    assert r.stdout.count("\n") == 1 and r.stdout.startswith("HALFOPEN UNKNOWN - ")
    assert says in r.stdout and r.stderr == ""
    if args == ["--json"]:
        return  # valid without --nagios
    # without --nagios the same mistake is a usage error (64) on stderr
    plain = run_halfopen("doctor", *args, timeout=120)
    assert plain.returncode == 64 and plain.stdout == ""


def test_a_broken_snapshot_is_unknown(tmp_path):
    bad = tmp_path / "snap.json"
    bad.write_text('{"schema": "halfopen.snapshot/1", "sockets": [')
    r = plugin("--snapshot", str(bad))
    assert r.returncode == 3 and r.stdout.startswith("HALFOPEN UNKNOWN - ")
    assert r.stdout.count("\n") == 1 and "Traceback" not in r.stdout + r.stderr


def test_a_mistyped_snapshot_and_an_internal_error_are_unknown_exit_3(tmp_path):
    """A snapshot whose file-nr is a string is refused before any rule sees it; a bug
    in a rule (injected: the doctor raises TypeError) still speaks the plugin's
    language, and --debug shows its traceback."""
    saved = tmp_path / "saved.json"
    r = run_halfopen("doctor", "--window", "0", "--save-snapshot", str(saved), timeout=120)
    assert saved.exists(), r.stderr
    data = json.loads(saved.read_text())
    assert data["host_facts"]["files"], "this host has no fs.file-nr?"
    data["host_facts"]["files"]["allocated"] = "many"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    r = plugin("--snapshot", str(broken))
    assert r.returncode == 3, r.stdout + r.stderr
    assert re.fullmatch(r"HALFOPEN UNKNOWN - .*broken.json: not a valid halfopen snapshot: "
                        r"\$\.host_facts\.files\.allocated: .*\n", r.stdout), r.stdout
    assert r.stderr == ""

    inject = ("import sys; import halfopen.diagnose.report as rep\n"
              "def broken(*a, **k): raise TypeError('injected')\n"
              "rep.diagnose = broken\n"
              "from halfopen.cli.main import main; sys.exit(main(sys.argv[1:]))")
    for debug in (False, True):
        argv = [sys.executable, "-c", inject, *(["--debug"] if debug else []), "doctor", "--nagios",
                "--snapshot", str(saved)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if debug:
            assert "Traceback" in r.stderr and "TypeError: injected" in r.stderr
        else:
            assert r.returncode == 3, r.stdout + r.stderr
            assert r.stdout == ("HALFOPEN UNKNOWN - internal error: TypeError: injected "
                                "(run with --debug)\n"), r.stdout
            assert r.stderr == ""


def test_timeout_expiry_is_unknown_in_one_line():
    window = 30  # the doctor would sample counters 30 s apart; the deadline comes first
    start = time.monotonic()
    r = plugin("--window", str(window), "--timeout", "1")
    assert time.monotonic() - start < window
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout == "HALFOPEN UNKNOWN - timed out after 1 s (--timeout)\n" and r.stderr == ""


def test_perfdata_labels_that_need_quotes():
    assert Perf("close_wait@hoM ns", 3, "", None, None, 0).text() == "'close_wait@hoM ns'=3;;;0"
    assert Perf("orphans", 0, "", 65536, 104857.6, 0, 131072).text() == \
        "orphans=0;65536;104857.6;0;131072"


def test_ranges_decide_the_state_and_fill_the_perfdata(close_wait_pile):
    """-w/-c in the guidelines' range syntax on named figures: the worse of the ranges and
    the rules is the state (here no rule fires: --min-age keeps the sockets too young)."""
    netns, count, _leaker = close_wait_pile
    base = ["--netns", netns, "--window", "0", "--min-age", "3600"]
    cases = [  # (thresholds, state, start of the summary)
        (["-w", f"close_wait={count}", "-c", f"close_wait={count + 1}"], "OK", None),
        (["-w", f"close_wait={count - 1}", "-c", f"close_wait={count}"], "WARNING",
         f"close_wait={count} (-w {count - 1})"),
        (["-w", "close_wait=10", "-c", f"close_wait=~:{count - 1}"], "CRITICAL",
         f"close_wait={count} (-c ~:{count - 1})"),
        (["-c", f"close_wait=@{count}:{count + 10}"], "CRITICAL",
         f"close_wait={count} (-c @{count}:{count + 10})"),
        (["--critical", f"close_wait={count + 1}:"], "CRITICAL",
         f"close_wait={count} (-c {count + 1}:)"),
        (["-w", "close_wait=@0:0,established=@0:0"], "WARNING", None),
    ]
    for thresholds, want, says in cases:
        r = plugin(*base, *thresholds)
        status, summary, perf, _long = parse(r.stdout)
        assert (status, r.returncode) == (want, EXIT[want]), (thresholds, r.stdout)
        assert "close-wait-leak" not in summary
        if says:
            assert summary.startswith(says + " - "), summary
    # the operator's ranges replace the rule's fields, as written
    r = plugin(*base, "-w", "close_wait_process_max=50", "-c", "close_wait_process_max=@60:")
    perf = parse(r.stdout)[2]
    assert perf["close_wait_process_max"] == [str(count), "50", "@60:", "0"]


@pytest.mark.parametrize("args, says", [
    (["-w", "100"], "want LABEL=RANGE"),
    (["-w", "nosuch=1"], "unknown figure 'nosuch'"),
    (["-c", "close_wait=10:5"], "the start 10 is above the end 5"),
    (["-c", "close_wait=1e3"], "N, N:, ~:N, N:M or @N:M"),
    (["-c", "close_wait=@"], "N, N:, ~:N, N:M or @N:M"),
    (["-t", "x"], "--timeout"),
])
def test_bad_ranges_are_unknown_in_one_line(args, says):
    r = plugin(*args)
    assert r.returncode == 3 and r.stdout.count("\n") == 1, r.stdout + r.stderr
    assert r.stdout.startswith("HALFOPEN UNKNOWN - ") and says in r.stdout, r.stdout
    plain = run_halfopen("doctor", *args, timeout=120)
    assert plain.returncode == 64 and plain.stdout == "", plain.stdout + plain.stderr


def test_focus_scopes_the_perfdata(close_wait_pile):
    """--pid/--port: the socket figures are the focus's, so a focused check's graph
    shows what its state judged."""
    netns, count, leaker = close_wait_pile
    base = ["--netns", netns, "--window", "0", "--min-age", "0"]
    whole = parse(plugin(*base).stdout)[2]
    assert int(whole["close_wait"][0]) == count
    mine = plugin(*base, "--pid", str(leaker.pid))
    status, summary, perf, _long = parse(mine.stdout)
    assert status == "CRITICAL" and "close-wait-leak" in summary
    assert perf["close_wait"][0] == str(count)
    assert perf["close_wait_process_max"][0] == str(count)
    other = plugin(*base, "--pid", str(os.getpid()))
    status, summary, perf, _long = parse(other.stdout)
    assert "close-wait-leak" not in summary
    assert perf["close_wait"][0] == "0" and perf["close_wait_process_max"][0] == "0"
    assert float(perf["fd_use_process_max"][0].rstrip("%")) < 50  # pytest's fds, not the leaker's
    # a port nobody uses: no sockets there, so a range of 0 on it is not past
    nobody = plugin(*base, "--port", "1", "-c", "close_wait=0")
    _status, summary, perf, _long = parse(nobody.stdout)
    assert perf["close_wait"] == ["0", "", "0", "0"]
    assert not summary.startswith("close_wait=") and "close-wait-leak" not in summary


def test_version_and_timeout_short_options():
    from halfopen import __version__
    for flag in ("-V", "--version"):
        r = run_halfopen("doctor", "--nagios", flag)
        assert (r.returncode, r.stdout) == (0, f"halfopen {__version__}\n")
    start = time.monotonic()
    r = plugin("--window", "30", "-t", "1")
    assert time.monotonic() - start < 30
    assert (r.returncode, r.stdout) == (3, "HALFOPEN UNKNOWN - timed out after 1 s (--timeout)\n")


def test_range_and_perfdata_docstrings():
    import doctest

    from halfopen.diagnose import perfdata, ranges
    for mod in (perfdata, ranges):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0
