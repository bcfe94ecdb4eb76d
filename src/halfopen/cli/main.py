"""Entry point: the command group, lazy subcommands, and error -> exit code.

Each subcommand lives in its own module, imported only when it runs, so
`halfopen sockets` does not pay for the doctor or the exporter.
"""

from __future__ import annotations

import importlib
import sys

import click

from .. import __version__
from ..errors import EXIT_UNKNOWN, EXIT_USAGE, HalfopenError
from ..model.text import shown

# command name -> (module, attribute, one-line help)
COMMANDS = {
    "sockets": ("halfopen.cli.sockets_cmd", "sockets", "List TCP sockets with owners and tcp_info."),
    "doctor": ("halfopen.cli.doctor_cmd", "doctor", "Name the cause of half-open and exhaustion problems."),
    "fix": ("halfopen.cli.fix_cmd", "fix", "Plan, apply, persist or roll back the doctor's fixes."),
    "kill": ("halfopen.cli.kill_cmd", "kill", "Destroy matching sockets (SOCK_DESTROY); dry run without --yes."),
    "keepalive": ("halfopen.cli.keepalive_cmd", "keepalive", "Retrofit TCP keepalive onto a running process's sockets."),
    "trace": ("halfopen.cli.trace_cmd", "trace", "Show how connections end (FINs, resets, close()) from tracefs."),
    "watch": ("halfopen.cli.watch_cmd", "watch", "Live view of socket states, leaks and findings."),
    "exporter": ("halfopen.cli.exporter_cmd", "exporter", "Serve Prometheus metrics."),
    "report": ("halfopen.cli.report_cmd", "report", "Turn a recorded history into an HTML report."),
    "lab": ("halfopen.cli.lab_cmd", "lab", "Reproduce each failure in network namespaces, diagnose and fix it."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _help = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _print_man(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from .manpage import render  # noqa: PLC0415 - it loads every command; only --man pays

    click.echo(render(cli), nl=False)
    ctx.exit(0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="halfopen")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
@click.option("--man", is_flag=True, expose_value=False, is_eager=True, callback=_print_man,
              help="Print the halfopen(8) manual page (roff) and exit.")
def cli(debug: bool) -> None:
    """Find, explain and fix TCP half-open connections and the exhaustion they cause.

    Exit codes: 0 ok, 1 warning, 2 critical, 3 could not check, 64 usage error.
    """


def one_line(text: str) -> str:
    """An error message as one line, by the one rule for untrusted text
    (model.text.shown): control characters (a file name with a newline, a
    terminal escape sequence, a process name) shown escaped, so the line can
    neither break nor repaint the operator's terminal.

    >>> one_line("cannot read a\\rb\\x1b[2J")
    'cannot read a\\\\rb\\\\x1b[2J'
    """
    return shown(text)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a command returns its exit code (None means 0)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        result = cli.main(args=args, prog_name="halfopen", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("halfopen: interrupted", err=True)
        return 130
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
            click.echo(exc.ctx.get_help())  # `halfopen lab`: the group's help, not an error line
            return EXIT_USAGE
        click.echo(f"halfopen: {one_line(exc.format_message())}", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"halfopen: {one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except HalfopenError as exc:
        click.echo(f"halfopen: {one_line(str(exc))}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        # `halfopen sockets | head`: the reader left; say nothing.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        click.echo("halfopen: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 3
        if "--debug" in args:
            raise
        click.echo(
            f"halfopen: internal error: {type(exc).__name__}: {one_line(str(exc))} "
            "(run with --debug for the traceback)",
            err=True,
        )
        return EXIT_UNKNOWN
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
