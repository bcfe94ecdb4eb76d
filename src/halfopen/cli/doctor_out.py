"""The doctor's human report: worst first, short by default, -v for evidence and why.

Titles, subjects, evidence and fixes embed process, container and pod names
and config paths: every line is drawn as rich `Text` (never parsed as markup)
of model.text.shown() text, so a name like `[/]` or `\x1b[2J` is shown, not
obeyed. The JSON keeps the exact text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from ..diagnose.perfdata import Breach
from ..diagnose.report import Report
from ..model.text import shown

if TYPE_CHECKING:
    from rich.console import Console

STYLE = {"critical": "bold red", "warning": "yellow", "unknown": "magenta", "info": "cyan",
         "ok": "green"}
LABEL = {"critical": "CRITICAL", "warning": "WARNING", "unknown": "UNKNOWN", "info": "info",
         "ok": "OK"}


def write_json(report: Report, out: IO[str]) -> None:
    json.dump(report.to_dict(), out, indent=2, default=str)
    out.write("\n")


def _value(v: Any) -> str:
    """Evidence values for people: [[item, count], ...] as 'item x count, ...'."""
    if isinstance(v, list) and v and all(isinstance(x, list) and len(x) == 2 for x in v):
        return ", ".join(f"{a} \u00d7{b}" for a, b in v)
    if isinstance(v, list):
        return json.dumps(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def write_text(report: Report, out: IO[str], verbose: bool = False) -> None:
    # rich only here: --json, --nagios and the watch's writers do not draw
    from rich.console import Console  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    con = Console(file=out, highlight=False, soft_wrap=not out.isatty(),
                  width=None if out.isatty() else 100)
    con.print(Text.assemble(("halfopen doctor", "bold"),
                            f"  {report.host} \u00b7 kernel {report.kernel} \u00b7 "
                            f"{report.taken_at} \u00b7 window {report.window_s:g} s"))
    listed = [f for f in report.findings if verbose or f.severity != "info"]
    hidden = len(report.findings) - len(listed)
    if not listed:
        con.print(Text("  no problems found", style="green"))
    for f in listed:
        con.print()
        head = Text.assemble((f"{LABEL[f.severity]:<9}", STYLE[f.severity]),
                             (f"{shown(f.id):<22}", "bold"), shown(f.title))
        con.print(head)
        pad = " " * 9
        subj = f.subject.to_dict()
        if verbose and subj:
            con.print(Text(pad + shown(", ".join(f"{k} {v}" for k, v in subj.items())),
                           style="dim"))
        if verbose:
            for e in f.evidence:
                note = f"  ({e.note})" if e.note else ""
                con.print(Text(pad + shown(f"\u2022 {e.what}: {_value(e.value)}  [{e.source}]{note}")))
        fixes = f.fixes if verbose else f.fixes[:2]
        for fx in fixes:
            tag = "auto" if fx.automatic else fx.action
            first, *rest = fx.command.splitlines() or [""]
            con.print(Text.assemble(pad, ("fix ", "green"), (f"[{shown(tag)}] ", "dim"),
                                    shown(first)))
            for line in rest:
                con.print(Text(pad + "           " + shown(line)))
            if verbose and fx.description:
                con.print(Text(pad + "    " + shown(fx.description), style="dim"))
        if len(f.fixes) > len(fixes):
            con.print(Text(pad + f"(+{len(f.fixes) - len(fixes)} more fixes with -v)", style="dim"))
        if verbose and f.why:
            _para(con, pad, f.why)
    con.print()
    status = Text.assemble(("status ", "bold"), (LABEL[report.status], STYLE[report.status]),
                           f" (exit {report.exit_code}) \u00b7 {len(report.checked)} rules checked")
    if report.unknown:
        status.append(f" \u00b7 could not check: {shown(', '.join(report.unknown))}",
                      style="magenta")
    if hidden:
        status.append(f" \u00b7 {hidden} info (-v)", style="dim")
    con.print(status)
    for note in report.notes:
        con.print(Text(f"note: {shown(note)}", style="dim"))
    if report.findings and any(x.fixes and x.fixes[0].automatic for x in report.findings):
        con.print(Text("`halfopen fix` plans the automatic fixes; `--apply` applies them.",
                       style="dim"))


def _para(con: Console, pad: str, text: str, width: int = 88) -> None:
    from rich.text import Text  # noqa: PLC0415 - as write_text

    words, line = text.split(), ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            con.print(Text(pad + shown(line), style="italic"))
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        con.print(Text(pad + shown(line), style="italic"))


# ---------------------------------------------------------------- monitoring plugin

NAGIOS_LONG_MAX = 50  # findings listed in the long output; Nagios keeps about 8 KB of it


def _plugin_text(text: str) -> str:
    """One line without the perfdata separator ('|' would end the text for Nagios),
    names in it shown() (Nagios shows the line in a browser and on terminals)."""
    return shown(" ".join(text.replace("|", "/").split()))


def nagios_line(status: str, summary: str, perf: str = "") -> str:
    """The plugin's first line: 'HALFOPEN CRITICAL - summary | perfdata'."""
    line = f"HALFOPEN {LABEL[status]} - {_plugin_text(summary)}"
    return f"{line} | {perf}" if perf else line


def nagios_summary(report: Report) -> str:
    counts = {sev: sum(1 for f in report.findings if f.severity == sev)
              for sev in ("critical", "warning")}
    if report.status == "unknown":
        return "could not check: " + (", ".join(report.unknown) or "no rule could run")
    if report.status == "ok":
        text = f"no problems found, {len(report.checked)} rules checked"
    else:
        worst = next(f for f in report.findings if f.severity == report.status)
        parts = [f"{n} {sev}" for sev, n in counts.items() if n]
        text = f"{', '.join(parts)}: {worst.id}: {worst.title}"
    if report.unknown:
        text += f"; could not check {', '.join(report.unknown)}"
    return text


# the plugin's state when the rules and the -w/-c ranges disagree: the worse, with
# UNKNOWN above OK (Monitoring Plugins' max_state_alt)
_PLUGIN_RANK = {"ok": 0, "unknown": 1, "warning": 2, "critical": 3}


def write_nagios(report: Report, perf: list, out: IO[str], verbose: bool = False,
                 breaches: Sequence[Breach] = (), unmeasured: Sequence[str] = ()) -> str:
    """Monitoring-plugin output: the status line with perfdata, then one line per finding
    (worst first; info ones with -v), then the notes. No banner, no colour.

    `breaches`: figures past the operator's -w/-c ranges (perfdata.judge); they raise
    the status and lead the summary. Returns the plugin's status."""
    status = max([report.status, *(b.severity for b in breaches)], key=_PLUGIN_RANK.__getitem__)
    summary = nagios_summary(report)
    # ' - ' between the parts, not ';': Nagios turns ';' into ':' (its log's separator)
    if breaches:
        summary = f"{', '.join(b.text for b in breaches)} - {summary}"
    if unmeasured:
        summary += f" - not measured here: {', '.join(unmeasured)}"
    out.write(nagios_line(status, summary, " ".join(p.text() for p in perf)) + "\n")
    listed = [f for f in report.findings if verbose or f.severity != "info"]
    for f in listed[:NAGIOS_LONG_MAX]:
        line = f"{LABEL[f.severity]} {f.id}: {f.title}"
        if f.fixes:
            line += f" (fix: {f.fixes[0].command.splitlines()[0] if f.fixes[0].command else f.fixes[0].action})"
        out.write(_plugin_text(line) + "\n")
    if len(listed) > NAGIOS_LONG_MAX:
        out.write(f"... and {len(listed) - NAGIOS_LONG_MAX} more: run halfopen doctor on the host\n")
    for note in report.notes:
        out.write(_plugin_text(f"note: {note}") + "\n")
    return status
