"""Shared fixtures: the database backends every store test runs on.

Use ``db_url`` in a test to run it once per backend (SQLite, PostgreSQL, MariaDB); each
call gets an empty database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.databases import ServerDatabase, selected_backends, server_database, wipe
from tests.service.drain_harness import Bench, make_bench

# Every property test, on a loaded 2-core machine (CI runs two processes): no per-example
# deadline and no "input generation is slow" health check; a test's own @settings keeps
# these unless it names them.
settings.register_profile(
    "suite", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("suite")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"db_url", "schema_db_url"} & set(metafunc.fixturenames):
        backends = selected_backends()
        only = metafunc.definition.get_closest_marker("backends")
        if only is not None:  # SQL that does not differ per server: the ones named suffice
            backends = [b for b in backends if b in only.args]
        metafunc.parametrize("db_backend", backends, indirect=True)


@pytest.fixture(scope="session", autouse=True)
def _key_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Key files for sealed tokens of server databases go to a temporary config folder
    (subprocesses inherit it), not to the home directory of whoever runs the suite."""
    saved = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    yield
    if saved is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = saved


@pytest.fixture(scope="session")
def _server_databases() -> Iterator[dict[str, ServerDatabase]]:
    made: dict[str, ServerDatabase] = {}
    yield made
    for db in made.values():
        db.drop()


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(
    db_backend: str,
    tmp_path: Path,
    _server_databases: dict[str, ServerDatabase],
    _prepared: dict[str, object],
) -> str:
    """An empty database on ``db_backend``: a fresh SQLite file, or a wiped server database."""
    if db_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'connector.db'}"
    url = _server_url(db_backend, _server_databases)
    wipe(url)
    _prepared.pop(db_backend, None)  # the schema_db_url schema is gone with the wipe
    return url


def _server_url(backend: str, made: dict[str, ServerDatabase]) -> str:
    """This run's database on ``backend``; fail under CI, skip elsewhere, when unreachable."""
    if backend not in made:
        made[backend] = server_database(backend)
    db = made[backend]
    if db.url is None:
        assert db.error is not None
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {db.error}", pytrace=False)
        pytest.skip(db.error)  # a laptop without that server; the reason says how to mend it
    return db.url


@pytest.fixture(scope="session")
def _prepared() -> dict[str, object]:
    """Backends whose server database holds the full schema (cleared between tests)."""
    return {}


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "connector.db"
    _build_schema(f"sqlite:///{path}")
    return path


def _build_schema(url: str) -> None:
    from connector.adapters.mapping_files import load_mappings
    from connector.adapters.store import migrate
    from connector.adapters.store.database import make_engine
    from connector.adapters.store.erp_schema import sync_erp_schema

    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        sync_erp_schema(engine, load_mappings(Path(__file__).resolve().parents[1] / "mappings"))
    finally:
        engine.dispose()


@pytest.fixture
def schema_db_url(
    db_backend: str,
    tmp_path: Path,
    _server_databases: dict[str, ServerDatabase],
    _prepared: dict[str, object],
    _sqlite_template: Path,
) -> str:
    """A database at head with the shipped mappings' ERP tables and no rows, per backend.

    Faster than ``db_url`` for tests that need the schema but do not test building it:
    SQLite copies a template file; a server database keeps its tables and loses its rows.
    """
    import shutil

    import sqlalchemy as sa

    if db_backend == "sqlite":
        target = tmp_path / "connector.db"
        shutil.copyfile(_sqlite_template, target)
        return f"sqlite:///{target}"
    url = _server_url(db_backend, _server_databases)
    engine = sa.create_engine(url)
    try:
        if _prepared.get(db_backend) is None:
            wipe(url)
            _build_schema(url)
            meta = sa.MetaData()
            meta.reflect(engine)
            # The outbox goes last: emptying an ERP table fires its capture triggers.
            ordered = [t for t in reversed(meta.sorted_tables) if t.name != "alembic_version"]
            _prepared[db_backend] = [t for t in ordered if t.name != "sync_outbox"] + [
                t for t in ordered if t.name == "sync_outbox"
            ]
        else:
            tables = _prepared[db_backend]
            assert isinstance(tables, list)
            with engine.begin() as conn:
                for table in tables:
                    conn.execute(table.delete())
    finally:
        engine.dispose()
    return url


@pytest.fixture
async def bench(db_url: str) -> AsyncIterator[Bench]:
    """The drain bench (in-process emulator, REST client, migrated database) on an empty
    database of each backend; modules that want the shared schema take ``schema_bench``."""
    b = await make_bench(db_url)
    yield b
    await b.http.aclose()
    b.engine.dispose()


@pytest.fixture
async def schema_bench(schema_db_url: str) -> AsyncIterator[Bench]:
    """The drain bench on the shared schema (``schema_db_url``): faster where the test
    does not build the schema itself."""
    b = await make_bench(schema_db_url)
    yield b
    await b.http.aclose()
    b.engine.dispose()
