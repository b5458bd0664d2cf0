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
@click.option(
    "--keep-running", is_flag=True, help="Leave the emulator up afterwards (Ctrl-C stops it)."
)
def demo(workdir: Path | None, as_json: bool, keep_running: bool) -> None:
    """Run a demo sync: the built-in emulator plus a local SQLite database.

    Starts the emulator on a loopback port, creates the tables, binds the offline events,
    backfills the seeded CRM, drains portal edits, pushes an ERP edit, and lists, shows
    and resolves a conflict through the CLI. Nothing leaves this machine.
    """
    import sys

    from connector.service.demo import run

    progress = None
    if not as_json and sys.stdout.isatty():
        from connector.service.commands.backfill import RichProgress

        progress = RichProgress()
    say = (lambda _: None) if as_json else click.echo
    report = run(workdir, say, keep=keep_running, progress=progress)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True, default=str))
    else:
        kept = workdir is not None or keep_running
        click.echo(
            f"Done. {report['database']} is kept."
            if kept
            else "Done. The temporary folder is removed; run with --dir D to keep demo.db."
        )
