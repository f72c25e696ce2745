"""`flask payments import-legacy`: carry the replaced service's payments over."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from tiketq.payments import legacy_import


@click.command("import-legacy")
@click.option("--from", "source", required=True, metavar="URL", help="The old database's URL.")
@click.option("--schema", default="public", show_default=True, help="Schema of its payments.")
@click.option("--dry-run", is_flag=True, help="Print the summary and write nothing.")
@with_appcontext
def import_legacy(source: str, schema: str, dry_run: bool) -> None:
    """Create a payment for each row of the old service's payments table not imported yet."""
    try:
        rows = legacy_import.read_rows(source, schema)
    except SQLAlchemyError as exc:
        # The driver's first line says what failed; the URL (and its password) is not repeated.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise click.ClickException(f"cannot read {schema}.payments: {reason}") from None
    summary = legacy_import.import_rows(rows, dry_run=dry_run)
    for line in summary.lines(dry_run=dry_run):
        click.echo(line)
