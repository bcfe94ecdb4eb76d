"""`halfopen report FILE.db --html OUT.html`: a recorded history as one HTML page."""

from __future__ import annotations

import sys

import click

from .. import fsio
from ..watch import history_db
from ..watch.presentation import html_report
from .options import PATH


@click.command()
@click.argument("db_path", type=PATH, metavar="FILE.db")
@click.option("--html", "out", type=PATH, metavar="OUT.html", help="Write the page here (default: stdout).")
def report(db_path: str, out: str | None) -> int:
    """Turn a history recorded by `halfopen watch --record` into a self-contained HTML page.

    \b
    Example:
      halfopen report /var/lib/halfopen/history.db --html incident-4711.html
    """
    with history_db.closing_reader(db_path) as db:
        history_db.verify(db, db_path)
        page = html_report.render(db, db_path)
    if out is None:
        sys.stdout.write(page)
        return 0
    fsio.write_atomic(out, page, mode=0o644)  # no symlink followed, never half-written
    click.echo(f"halfopen: wrote {out}", err=True)
    return 0
