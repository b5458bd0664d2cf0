"""The real database servers the suite runs against, one throwaway database per run.

``B24_TEST_DATABASES`` picks the backends (default ``sqlite,postgresql,mariadb``).
Server URLs come from ``B24_TEST_POSTGRES_URL`` / ``B24_TEST_MARIADB_URL`` (defaults:
the CI machine's PostgreSQL and MariaDB on 127.0.0.1 with trust / empty-password root).
When ``CI`` is set, an unreachable server FAILS the tests that need it; elsewhere they
are skipped with a reason naming the server and the variable to set.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import make_url

DEFAULT_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
URL_VARS = {"postgresql": "B24_TEST_POSTGRES_URL", "mariadb": "B24_TEST_MARIADB_URL"}


def selected_backends() -> list[str]:
    raw = os.environ.get("B24_TEST_DATABASES", "sqlite,postgresql,mariadb")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = set(names) - {"sqlite", "postgresql", "mariadb"}
    if unknown:
        raise RuntimeError(f"B24_TEST_DATABASES: unknown backend(s) {sorted(unknown)}")
    return names


@dataclass
class ServerDatabase:
    """A database created for this test run on a real server, dropped at the end."""

    backend: str
    admin_url: str
    url: str | None = None
    error: str | None = None

    def create(self) -> None:
        name = f"b24t_{uuid.uuid4().hex[:12]}"
        try:
            admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
            admin.dispose()
        except Exception as exc:
            self.error = (
                f"{self.backend} at {make_url(self.admin_url).render_as_string()} is unreachable "
                f"({type(exc).__name__}): start it, point {URL_VARS[self.backend]} at one, or "
                f"leave {self.backend} out with B24_TEST_DATABASES (under CI this fails)"
            )
            return
        self.url = make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.url is None:
            return
        name = make_url(self.url).database
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if self.backend == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def server_database(backend: str) -> ServerDatabase:
    url = os.environ.get(URL_VARS[backend], DEFAULT_URLS[backend])
    db = ServerDatabase(backend, url)
    db.create()
    return db


def wipe(url: str) -> None:
    """Drop every table (ours, ERP ones, alembic_version) so a test starts empty."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()
