"""``b24-connector demo``: a demo sync against the built-in emulator and SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep demo.db here (default: a new temporary folder).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def demo(workdir: Path | None, as_json: bool) -> None:
    """Run a demo sync: the built-in emulator plus a local SQLite database.

    Starts the emulator on a loopback port, creates the tables, binds the offline events,
    backfills the seeded CRM, drains portal edits and shows a conflict. Nothing leaves
    this machine.
    """
    from connector.service.demo import run

    report = run(workdir, (lambda _: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True, default=str))
    else:
        click.echo(
            f"Done. Look inside with: sqlite3 {report['database']} "
            "'select b24_id, title from erp_company'"
        )
