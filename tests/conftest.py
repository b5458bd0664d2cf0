"""Shared fixtures: the database backends every store test runs on.

Use ``db_url`` in a test to run it once per backend (SQLite, PostgreSQL, MariaDB); each
call gets an empty database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import ServerDatabase, selected_backends, server_database, wipe


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" in metafunc.fixturenames:
        metafunc.parametrize("db_backend", selected_backends(), indirect=True)


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
def db_url(db_backend: str, tmp_path: Path, _server_databases: dict[str, ServerDatabase]) -> str:
    """An empty database on ``db_backend``: a fresh SQLite file, or a wiped server database."""
    if db_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'connector.db'}"
    if db_backend not in _server_databases:
        _server_databases[db_backend] = server_database(db_backend)
    db = _server_databases[db_backend]
    if db.url is None:
        assert db.error is not None
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {db.error}", pytrace=False)
        pytest.skip(db.error)
    wipe(db.url)
    return db.url
