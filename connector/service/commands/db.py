"""``b24-connector db …``: the connector's tables and the ERP tables from the mappings."""

from __future__ import annotations

import click


@click.group()
def db() -> None:
    """Create and migrate the database (B24_DATABASE_URL)."""


@db.command()
@click.option("--dry-run", is_flag=True, help="Only say what the ERP-table step would change.")
def upgrade(dry_run: bool) -> None:
    """Migrate the sync_ tables to the newest revision, then create or extend the ERP tables
    the mappings describe (new tables and columns only; nothing is dropped or retyped)."""
    from sqlalchemy.exc import OperationalError  # heavy imports stay out of --help

    from connector.adapters.store import migrate
    from connector.adapters.store.erp_schema import sync_erp_schema
    from connector.service import wiring

    cfg = wiring.settings()
    mappings = wiring.mappings(cfg)  # a broken mapping stops before anything is touched
    engine = wiring.store_engine(cfg)
    try:
        before = migrate.current_revision(engine)
        if not dry_run:
            migrate.upgrade(engine)
        after = migrate.current_revision(engine)
        report = sync_erp_schema(engine, mappings, dry_run=dry_run)
    except OperationalError as exc:
        from connector.adapters.store.db_errors import store_error

        raise store_error(exc, what="the database in B24_DATABASE_URL") from exc
    finally:
        engine.dispose()
    if dry_run:
        click.echo(f"sync_ tables at revision {before or 'nothing'} (dry run: not migrated)")
    elif before == after:
        click.echo(f"sync_ tables already at revision {after}")
    else:
        click.echo(f"sync_ tables upgraded from {before or 'empty'} to {after}")
    lines = report.lines()
    click.echo("ERP tables up to date with the mappings" if not lines else "ERP tables:")
    for line in lines:
        click.echo(f"  {line}")
