"""Alembic, driven from code so ``db upgrade`` works from an installed wheel.

The migration scripts live in the repository's top-level ``migrations/`` folder and ship
inside the wheel as the package ``connector.migrations``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from connector.errors import SchemaOutOfDate, StoreError


def script_location() -> Path:
    """Where the Alembic scripts are: the ``connector.migrations`` package."""
    spec = importlib.util.find_spec("connector.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise StoreError("the connector.migrations package is missing from this install")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def alembic_config(engine: Engine) -> Config:
    """An Alembic config with no ini file; ``env.py`` reuses ``engine``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    try:
        command.upgrade(alembic_config(engine), revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"database upgrade failed: {type(exc).__name__}: {exc.args[0]}") from exc


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_bare_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_head(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDate` unless the database is at the head revision."""
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        from connector.adapters.store.db_errors import store_error

        raise store_error(exc, what="reading the database (B24_DATABASE_URL)") from exc
    if current != head_revision():
        raise SchemaOutOfDate(
            f"database schema is at {current or 'nothing'}, expected {head_revision()}; "
            "run: b24-connector db upgrade"
        )


def _bare_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    return cfg
