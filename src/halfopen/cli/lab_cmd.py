"""`halfopen lab`: list, run and clean the namespace lab."""

from __future__ import annotations

import json
import sys

import click

from ..errors import EXIT_UNKNOWN, HalfopenError, UsageError
from ..lab import runner, scenarios
from . import complete


class LabUnavailable(HalfopenError):
    exit_code = EXIT_UNKNOWN


@click.group()
def lab() -> None:
    """Reproduce each failure in network namespaces, diagnose it, fix it, prove the fix.

    \b
    Examples:
      halfopen lab list
      sudo halfopen lab run leaky-server
      sudo halfopen lab run syn-flood --json
      sudo halfopen lab clean
    """


@lab.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def list_(as_json: bool) -> int:
    """The scenarios, the finding each must produce, and what it shows."""
    rows = [{"name": s.NAME, "findings": list(s.FINDINGS), "summary": s.SUMMARY}
            for s in scenarios.all_scenarios()]
    if as_json:
        json.dump({"schema": "halfopen.lab.list/1", "scenarios": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {', '.join(r['findings'])}")
        click.echo(f"{'':<{width}}  {r['summary']}")
    return 0


@lab.command("run")
@click.argument("scenario", metavar="SCENARIO", shell_complete=complete.scenario_names)
@click.option("--keep", is_flag=True, help="Leave the namespaces and processes for exploring.")
@click.option("--json", "as_json", is_flag=True,
              help="The result as JSON on stdout; the narration goes to stderr.")
def run(scenario: str, keep: bool, as_json: bool) -> int:
    """Build, break, diagnose, fix and verify one SCENARIO (exit 0 when cured)."""
    if scenario not in scenarios.SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}; scenarios: {', '.join(scenarios.SCENARIOS)}")
    missing = runner.preflight(scenarios.load(scenario).NEEDS)
    if missing:
        raise LabUnavailable(missing)
    result = runner.run(scenario, keep=keep, out=sys.stderr if as_json else sys.stdout)
    if as_json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    if result.passed():
        return 0
    return 2 if result.verdict == "not cured" else EXIT_UNKNOWN if result.verdict != "interrupted" else 130


@lab.command("clean")
def clean() -> int:
    """Remove what a crashed or --keep run recorded: namespaces, processes, host sysctls.

    Only what the lab's state file names is touched; other ho-* namespaces
    and their processes are left alone, and listed."""
    missing = runner.preflight()
    if missing:
        raise LabUnavailable(missing)
    removed = runner.clean()
    lines = [r if r.startswith("left alone") else f"removed {r}" for r in removed]
    click.echo("\n".join(lines) if lines else "nothing to clean")
    return 0
