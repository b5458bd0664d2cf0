"""Alembic environment: uses the engine handed in by ``connector.adapters.store.migrate``."""

from __future__ import annotations

from alembic import context

from connector.adapters.store.tables import metadata

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:  # plain `alembic` CLI use: read the URL from the settings
        from connector.adapters.store.database import make_engine
        from connector.settings import load_settings

        engine = make_engine(load_settings().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit(
        "offline (SQL script) migrations are not supported; run b24-connector db upgrade"
    )
run_migrations_online()
