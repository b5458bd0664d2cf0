"""Engines for the supported databases: SQLite, PostgreSQL (psycopg 3), MariaDB/MySQL (PyMySQL).

SQLite gets SQLAlchemy's documented transaction recipe: pysqlite's own ``BEGIN`` handling
is switched off and SQLAlchemy emits ``BEGIN`` itself, so a transaction really spans
every statement in it and savepoints nest inside it (left alone, pysqlite on Python 3.11
runs reads outside any transaction and a released savepoint commits on its own).
:func:`write_transaction` / :func:`lock_for_write` take SQLite's write lock at ``BEGIN``
(``BEGIN IMMEDIATE``) where a read-then-write must not race another process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from connector.core import json_codec


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (already normalised by the settings).

    JSON columns go through :mod:`~connector.core.json_codec` (orjson).
    SQLite gets WAL, foreign keys and a busy timeout so the worker and the CLI can share
    one file. A file database keeps SQLAlchemy's default pool (connections reused: a
    new one per transaction re-reads the schema and starts with a cold page cache,
    ~20 % of a bulk apply); a pooled connection still sees every committed write,
    since each transaction is an explicit ``BEGIN`` and the pool rolls back on return.
    """
    parsed = make_url(url)
    kwargs.setdefault("json_serializer", json_codec.dumps)
    kwargs.setdefault("json_deserializer", json_codec.loads)
    if parsed.get_backend_name() == "sqlite":
        _create_private(parsed.database)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN (see _sqlite_begin)
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if parsed.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _create_private(database: str | None) -> None:
    """A new SQLite file is created 0600 (it holds the connector's tokens); SQLite gives
    its -wal and -shm files the same mode. An existing file is left as it is."""
    if database in (None, "", ":memory:") or str(database).startswith("file:"):
        return
    path = Path(str(database))
    if path.exists() or not path.parent.is_dir():
        return  # a missing folder fails at connect, with the driver's own message
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def backend_name(url: str) -> str:
    """``sqlite``, ``postgresql`` or ``mysql``."""
    return make_url(url).get_backend_name()


def lock_for_write(conn: Connection) -> None:
    """Begin ``conn``'s transaction holding SQLite's write lock; call it before any statement.

    Elsewhere it does nothing: PostgreSQL and MariaDB lock rows with ``FOR UPDATE``.
    """
    if conn.dialect.name == "sqlite" and not conn.in_transaction():
        conn.execution_options(sqlite_begin="IMMEDIATE")
        conn.begin()


ECHO_SETTING = "b24.connector_write"
"""PostgreSQL: the transaction-local setting the outbox triggers read."""
ECHO_VARIABLE = "@b24_connector_write"
"""MariaDB/MySQL: the session variable the outbox triggers read."""
ECHO_TABLE = "sync_echo"
"""SQLite: the marker table the outbox triggers read (a row exists only inside our
own uncommitted transaction, and SQLite has one writer at a time)."""


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for the connector's own writes, invisible to the outbox.

    On SQLite the write lock is taken at ``BEGIN``. On every backend the transaction is
    marked as the connector's, so the outbox triggers on the ERP tables record nothing
    for it (``connector.adapters.store.outbox_triggers``): PostgreSQL a transaction-local
    setting, MariaDB a session variable reset when the transaction ends, SQLite a marker
    row inserted first and deleted last, inside the same transaction, so no other
    connection ever sees it.
    """
    with engine.connect() as conn:
        dialect = conn.dialect.name
        if dialect == "sqlite":
            conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            with conn.begin():
                _mark_connector_write(conn, dialect)
                yield conn
                if dialect == "sqlite":
                    conn.exec_driver_sql(f"DELETE FROM {ECHO_TABLE}")
        finally:
            if dialect in ("mysql", "mariadb") and not conn.invalidated:
                try:
                    conn.exec_driver_sql(f"SET {ECHO_VARIABLE} = NULL")
                except DBAPIError:
                    conn.invalidate()  # never hand a still-marked connection back to the pool


def _mark_connector_write(conn: Connection, dialect: str) -> None:
    if dialect == "postgresql":
        conn.exec_driver_sql(f"SELECT set_config('{ECHO_SETTING}', 'on', true)")
    elif dialect in ("mysql", "mariadb"):
        conn.exec_driver_sql(f"SET {ECHO_VARIABLE} = 1")
    elif dialect == "sqlite":
        conn.exec_driver_sql(f"INSERT OR IGNORE INTO {ECHO_TABLE} (marker) VALUES (1)")
