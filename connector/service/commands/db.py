"""``b24-connector db …``: the connector's database schema."""

from __future__ import annotations

import click
from sqlalchemy.exc import OperationalError

from connector.adapters.store import migrate
from connector.errors import StoreError
from connector.service import wiring


@click.group()
def db() -> None:
    """Create and migrate the connector's database (B24_DATABASE_URL)."""


@db.command()
def upgrade() -> None:
    """Bring the database schema to the newest revision (creates it when empty)."""
    cfg = wiring.settings()
    engine = wiring.store_engine(cfg)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        after = migrate.current_revision(engine)
    except OperationalError as exc:
        raise StoreError(
            f"cannot reach the database in B24_DATABASE_URL ({type(exc.orig).__name__})"
        ) from exc
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"database already at revision {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")
