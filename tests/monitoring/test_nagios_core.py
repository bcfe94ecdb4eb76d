"""A real Nagios Core runs `halfopen doctor --nagios` against a real leak: a CLOSE_WAIT
pile in a test namespace. Nagios records CRITICAL with our perfdata and long output
in its status.dat and log; when the leaking process is gone, the next check recovers.
Two more services check the same pile with -w/-c ranges and a --pid focus: the
range decides the state Nagios records, and the focus scopes the perfdata.

The test starts its own nagios4 (Debian's nagios4-core) in the foreground with its
own configuration directory (never the system service), checks every 3 s
(interval_length=1), and stops it after."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.helpers import halfopen_argv, wait_for

import halfopen
from halfopen.diagnose import closewait

from .conftest import LEAKER, start_process, stop_group

NAGIOS = shutil.which("nagios4") or "/usr/sbin/nagios4"
pytestmark = pytest.mark.skipif(not Path(NAGIOS).exists(),
                                reason="nagios4 not installed (scripts/install-deps --test)")

OBJECTS = """\
define timeperiod {{
  timeperiod_name always
  alias always
  sunday 00:00-24:00
  monday 00:00-24:00
  tuesday 00:00-24:00
  wednesday 00:00-24:00
  thursday 00:00-24:00
  friday 00:00-24:00
  saturday 00:00-24:00
}}
define command {{
  command_name check_true
  command_line /bin/true
}}
define contact {{
  contact_name nobody
  host_notifications_enabled 0
  service_notifications_enabled 0
  host_notification_period always
  service_notification_period always
  host_notification_options n
  service_notification_options n
  host_notification_commands check_true
  service_notification_commands check_true
}}
define host {{
  host_name hoM-host
  address 127.0.0.1
  check_command check_true
  max_check_attempts 1
  check_period always
  notification_period always
  contacts nobody
}}
{services}"""

SERVICE = """\
define command {{
  command_name check_{name}
  command_line {check}
}}
define service {{
  host_name hoM-host
  service_description {name}
  check_command check_{name}
  max_check_attempts 1
  check_interval 3
  retry_interval 3
  check_period always
  notification_period always
  notifications_enabled 0
  contacts nobody
}}
"""

MAIN = """\
log_file={d}/nagios.log
cfg_file={d}/objects.cfg
object_cache_file={d}/objects.cache
precached_object_file={d}/objects.precache
status_file={d}/status.dat
status_update_interval=1
nagios_user=root
nagios_group=root
check_external_commands=0
command_file={d}/nagios.cmd
lock_file={d}/nagios.lock
temp_file={d}/nagios.tmp
temp_path={d}
state_retention_file={d}/retention.dat
retain_state_information=0
check_result_path={d}/checkresults
query_socket={d}/nagios.qh
interval_length=1
use_syslog=0
enable_notifications=0
enable_flap_detection=0
enable_event_handlers=0
process_performance_data=0
service_inter_check_delay_method=n
host_inter_check_delay_method=n
max_service_check_spread=1
max_host_check_spread=1
check_result_reaper_frequency=1
service_check_timeout=240
log_initial_states=1
illegal_macro_output_chars=`~$&|"<>
"""


def service_status(status_dat: Path, name: str = "halfopen") -> dict[str, str] | None:
    """The servicestatus block of service `name` in status.dat (key=value lines), None
    before the first write."""
    try:
        text = status_dat.read_text()
    except FileNotFoundError:
        return None
    for chunk in text.split("servicestatus {")[1:]:
        block = dict(line.strip().split("=", 1) for line in chunk.split("}", 1)[0].splitlines()
                     if "=" in line)
        if block.get("service_description") == name:
            return block
    return None


def test_nagios_records_the_leak_then_the_recovery(netns, tmp_path):
    count = closewait.CRITICAL_COUNT + 5
    leaker = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, str(LEAKER),
                               "--initial", str(count)], stdout=subprocess.PIPE, text=True)
    nagios = None
    try:
        assert leaker.stdout.readline().startswith("ready "), "leaker did not start"
        # the halfopen under test, as an operator's command definition would run it
        # (Nagios clears the environment: the package's directory is passed on)
        where = Path(halfopen.__file__).resolve().parent.parent
        plugin = " ".join(halfopen_argv("doctor", "--nagios", "--netns", netns, "--window", "0",
                                        prefix=("/usr/bin/env", f"PYTHONPATH={where}")))
        checks = {
            "halfopen": f"{plugin} --min-age 0 --timeout 200",
            # no rule fires (the sockets are younger than --min-age): the -c range alone
            # makes it CRITICAL; -w is past too, and CRITICAL wins
            "halfopen-ranges": f"{plugin} --min-age 3600 -t 200 -w close_wait=10 "
                               f"-c close_wait=~:{count - 1}",
            # focused on another process: its CLOSE_WAIT figure is its own, 0
            "halfopen-focus": f"{plugin} --min-age 3600 -t 200 --pid {os.getpid()} "
                              f"-c close_wait=0",
        }
        services = "".join(SERVICE.format(name=n, check=c) for n, c in checks.items())
        (tmp_path / "checkresults").mkdir()
        (tmp_path / "objects.cfg").write_text(OBJECTS.format(services=services))
        cfg = tmp_path / "nagios.cfg"
        cfg.write_text(MAIN.format(d=tmp_path))
        verify = subprocess.run([NAGIOS, "-v", str(cfg)], capture_output=True, text=True,
                                timeout=60)
        assert verify.returncode == 0, verify.stdout[-2000:]
        nagios = start_process([NAGIOS, str(cfg)], tmp_path / "nagios.out")
        status = tmp_path / "status.dat"

        def checked(state: str, after: float = 0.0, name: str = "halfopen"):
            s = service_status(status, name)
            if s and s.get("has_been_checked") == "1" and s["current_state"] == state \
                    and int(s["last_check"]) >= after:
                return s
            return None

        # bounded, and generous: one check reads every process's fds, which takes a
        # minute on a host at load 30 with 100k fds open
        critical = wait_for("Nagios to record CRITICAL", lambda: checked("2"), timeout=300, step=1)
        assert critical["plugin_output"].startswith("HALFOPEN CRITICAL - ")
        assert "close-wait-leak" in critical["plugin_output"]
        assert f"close_wait={count};;;0" in critical["performance_data"].split()
        assert (f"close_wait_process_max={count};{closewait.WARN_COUNT};"
                f"{closewait.CRITICAL_COUNT};0") in critical["performance_data"].split()
        assert f"CRITICAL close-wait-leak: leaker (pid {leaker.pid})" in \
            critical["long_plugin_output"]
        log = (tmp_path / "nagios.log").read_text()
        assert "SERVICE ALERT: hoM-host;halfopen;CRITICAL;HARD;1;HALFOPEN CRITICAL - " in log

        ranged = wait_for("Nagios to record the range's CRITICAL",
                          lambda: checked("2", name="halfopen-ranges"), timeout=300, step=1)
        assert ranged["plugin_output"].startswith(
            f"HALFOPEN CRITICAL - close_wait={count} (-c ~:{count - 1}) - "), ranged
        assert "close-wait-leak" not in ranged["plugin_output"]
        assert f"close_wait={count};10;~:{count - 1};0" in ranged["performance_data"].split()
        focus = wait_for("Nagios to check the focused service",
                         lambda: service_status(status, "halfopen-focus") if
                         (service_status(status, "halfopen-focus") or {}).get(
                             "has_been_checked") == "1" else None, timeout=300, step=1)
        assert "close_wait=0;;0;0" in focus["performance_data"].split(), focus
        assert not focus["plugin_output"].startswith("HALFOPEN CRITICAL - close_wait"), focus
        log = (tmp_path / "nagios.log").read_text()
        assert ("SERVICE ALERT: hoM-host;halfopen-ranges;CRITICAL;HARD;1;"
                f"HALFOPEN CRITICAL - close_wait={count} (-c") in log

        leaker.kill()
        leaker.wait(10)
        gone = time.time()

        def recovered():
            s = service_status(status)
            if s and int(s["last_check"]) > gone + 1 and s["current_state"] != "2":
                return s
            return None

        after = wait_for("Nagios to record the recovery", recovered, timeout=300, step=1)
        assert "close-wait-leak" not in after["plugin_output"] + after["long_plugin_output"]
        assert "close_wait=0;;;0" in after["performance_data"].split()
        state = {"0": "OK", "1": "WARNING"}[after["current_state"]]  # host-wide findings may warn
        assert after["plugin_output"].startswith(f"HALFOPEN {state} - ")
    finally:
        if nagios is not None:
            stop_group(nagios)
        if leaker.poll() is None:
            leaker.kill()
            leaker.wait(10)
