"""halfopen(8) in roff, made from the commands' own help so the two never drift.

`halfopen --man` prints it; docs/halfopen.8 is the same text, shipped in the
wheel under share/man/man8 (tests check that it is current).
"""

from __future__ import annotations

import inspect

import click

from .. import __version__

_HEAD = """\
.TH HALFOPEN 8 "" "halfopen {version}" "System Administration"
.SH NAME
halfopen \\- find, explain and fix TCP half-open connections and the exhaustion they cause
.SH SYNOPSIS
.B halfopen
[\\fB\\-\\-debug\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIFILTER\\fR]
.SH DESCRIPTION
halfopen reads the kernel directly (netlink sock_diag with tcp_info, /proc),
names the process and the cause of leaked CLOSE_WAIT sockets, dead peers, SYN
floods, full accept queues and fd, conntrack, memory and port exhaustion,
says why, and applies the cure with a plan, a journal and a rollback.
"""

_TAIL = """\
.SH FILTER
The filter words are those of
.BR ss (8):
\\fBstate\\fR \\fINAME\\fR, \\fBsport\\fR/\\fBdport\\fR \\fIOP\\fR :\\fIPORT\\fR,
\\fBsrc\\fR/\\fBdst\\fR \\fIADDR\\fR[/\\fILEN\\fR][:\\fIPORT\\fR], joined with
\\fBand\\fR, \\fBor\\fR, \\fBnot\\fR and parentheses; halfopen adds
\\fBpid\\fR \\fIN\\fR, \\fBcomm\\fR \\fINAME\\fR and \\fBuid\\fR \\fIN\\fR.
.SH EXIT STATUS
0 ok, 1 warning, 2 critical, 3 could not check (the Nagios plugin convention), 64 usage error.
.SH SHELL COMPLETION
.nf
eval "$(_HALFOPEN_COMPLETE=bash_source halfopen)"   # bash, in ~/.bashrc
eval "$(_HALFOPEN_COMPLETE=zsh_source halfopen)"    # zsh, in ~/.zshrc
_HALFOPEN_COMPLETE=fish_source halfopen | source    # fish
.fi
.SH FILES
.TP
.I /var/lib/halfopen/journal.jsonl
the journal of every change \\fBhalfopen fix\\fR made, for \\fB\\-\\-rollback\\fR
.SH SEE ALSO
.BR ss (8),
.BR tcp (7),
.BR prlimit (1),
.BR sysctl (8)
"""


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote on a line."""
    lines = []
    for line in text.replace("\\", "\\e").splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _help(text: str) -> str:
    """Click help as roff: paragraphs filled, a paragraph after click's \\b kept as written."""
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        if para.startswith("\b\n"):
            out += [".PP", ".nf", _roff(para[2:]), ".fi"]
        else:
            out += [".PP", _roff(para)]
    return "\n".join(out)


def _command(name: str, command: click.Command, ctx: click.Context) -> list[str]:
    sub = click.Context(command, info_name=name, parent=ctx)
    usage = " ".join(command.collect_usage_pieces(sub))
    out = [f".SS halfopen {name} {_roff(usage)}", _help(command.help or command.short_help or "")]
    for param in command.get_params(sub):
        if not isinstance(param, click.Option):
            continue  # arguments are in the usage line (click 8.2+ would list them again)
        record = param.get_help_record(sub)
        if record is None:
            continue
        opts, help_text = record
        out += [".TP", f"\\fB{_roff(opts)}\\fR", _roff(help_text)]
    return out


def render(group: click.Group) -> str:
    """The whole page for `group` (halfopen's top-level command)."""
    ctx = click.Context(group, info_name="halfopen")
    out = [_HEAD.format(version=__version__).rstrip("\n"), ".SH COMMANDS"]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None:
            out += _command(name, command, ctx)
    return "\n".join(out) + "\n" + _TAIL
