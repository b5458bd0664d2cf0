"""Alembic migrations: empty → head → base → head on every database, and no drift."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from connector.adapters.store import migrate
from connector.adapters.store.database import make_engine
from connector.adapters.store.tables import metadata


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_downgrade_upgrade_round_trip(db_url: str) -> None:
    """Upgrade creates every sync_ table, downgrade removes them all, upgrade again works."""
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        assert set(metadata.tables) <= _tables(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        migrate.downgrade(engine, "base")
        assert not {t for t in _tables(engine) if t.startswith("sync_")}
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert set(metadata.tables) <= _tables(engine)
    finally:
        engine.dispose()


def test_models_and_migrations_agree(db_url: str) -> None:
    """After upgrading to head, autogenerate finds no difference from the table definitions."""
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
        assert diff == [], diff
    finally:
        engine.dispose()


def test_require_head_names_the_fix(db_url: str) -> None:
    """A database behind head is refused with a message telling to run db upgrade."""
    import pytest

    from connector.errors import SchemaOutOfDate

    engine = make_engine(db_url)
    try:
        with pytest.raises(SchemaOutOfDate, match="b24-connector db upgrade"):
            migrate.require_head(engine)
        migrate.upgrade(engine)
        migrate.require_head(engine)
    finally:
        engine.dispose()


def test_the_shared_rate_bucket_keeps_sub_second_times(db_url: str) -> None:
    """unix seconds survive the round trip on every backend (MariaDB's single FLOAT
    rounded them to about a minute, and every process then waited on a phantom bucket)."""
    import time

    import sqlalchemy as sa

    from connector.adapters.store.tables import sync_rate_bucket

    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        now = time.time()
        with engine.begin() as conn:
            conn.execute(
                sync_rate_bucket.insert().values(
                    portal="p", level=12.25, updated_at=now, slowdown_until=now + 0.5
                )
            )
        with engine.connect() as conn:
            row = conn.execute(sa.select(sync_rate_bucket)).one()
        assert abs(row.updated_at - now) < 0.01 and abs(row.slowdown_until - now - 0.5) < 0.01
        assert row.level == 12.25
    finally:
        engine.dispose()
