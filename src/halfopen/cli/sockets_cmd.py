"""`halfopen sockets`: every TCP socket, its owner and its tcp_info."""

from __future__ import annotations

import json
import sys

import click

from ..collect import sockets as collector
from ..errors import UsageError
from ..model import filter as filters
from ..model.text import shown
from . import sockets_out
from .options import filter_argument, namespace_options, resolve_namespaces
from .progress import counting, is_terminal, progress


@click.command(context_settings={"ignore_unknown_options": True})
@filter_argument
@click.option("-p", "--processes", is_flag=True, help="Show the processes holding each socket.")
@click.option("-i", "--info", is_flag=True, help="Read tcp_info: idle times, retransmits, RTO.")
@namespace_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option("--jsonl", is_flag=True, help="One JSON object per line, streamed.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
@click.option("--summary", is_flag=True, help="Counts by state, process, local port, peer.")
@click.option("--source", type=click.Choice(collector.SOURCES), default="auto",
              show_default=True, help="Where to read sockets from.")
def sockets(filter_words: tuple[str, ...], processes: bool, info: bool,
            netns_name: str | None, netns_pid: int | None, all_netns: bool,
            as_json: bool, jsonl: bool, as_csv: bool, summary: bool, source: str) -> int:
    """List TCP sockets, filtered with ss's words.

    The table is aligned over all its rows, so it prints when the dump ends
    (past 10,000 rows they wait in an unlinked temporary file, not in memory);
    --jsonl and --csv stream the sockets out as they are read.

    \b
    FILTER: state NAME | exclude NAME | sport/dport [OP] :PORT | src/dst ADDR[/LEN][:PORT]
            | dev NAME | fwmark M[/MASK] | cgroup PATH | autobound | pid N | comm NAME
            | uid N | container NAME|ID, joined by and, or, not and ( ) left to right
            as in ss (docs/filter.md).
    State names and groups: established, syn-sent, syn-recv, fin-wait-1, fin-wait-2,
    time-wait, closed, close-wait, last-ack, listening, closing, all, connected,
    synchronized, bucket, big.
    \b
    Examples:
      halfopen sockets state close-wait -p
      halfopen sockets -p -i 'dport = :443 or sport = :443'
      halfopen sockets --summary --all-netns
    """
    if sum((as_json, jsonl, as_csv)) > 1:
        raise UsageError("choose one of --json, --jsonl, --csv")
    flt = filters.parse(filter_words)
    spaces = resolve_namespaces(netns_name, netns_pid, all_netns)
    query = collector.Query(filter=flt, tcp_info=info, owners=processes or summary,
                            namespaces=spaces, source=source)
    with progress("reading the owners' file descriptors"):
        collection = collector.collect(query)
    out = sys.stdout
    # a line on a terminal stderr while the table is read (it is printed only once
    # read whole), or while a stream goes to a file; not over a stream on the terminal
    buffered = summary or not (as_json or jsonl or as_csv)
    socks = counting(collection.sockets, "reading sockets", "sockets",
                                  enabled=buffered or not is_terminal(out))
    if summary:
        result = sockets_out.summarize(socks)
        if as_json or jsonl:
            json.dump(result, out, indent=None if jsonl else 2)
            out.write("\n")
        else:
            out.write("\n".join(sockets_out.summary_text(result)) + "\n")
    elif as_json:
        sockets_out.write_json(socks, out, collection.source, collection.notes)
    elif jsonl:
        sockets_out.write_jsonl(socks, out)
    elif as_csv:
        sockets_out.write_csv(socks, out, info)
    else:
        sockets_out.write_table(socks, out, info, show_netns=len(spaces) > 1)
    out.flush()
    for note in collection.notes:
        click.echo(f"halfopen: note: {shown(note)}", err=True)
    return 0
