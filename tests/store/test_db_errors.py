"""Each kind of database failure comes out as one line naming its reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import lock_for_write, make_engine
from connector.adapters.store.db_errors import store_error
from tests.databases import DEFAULT_URLS


def _failure(url: str, statement: str = "SELECT 1", **kwargs: object) -> sa.exc.SQLAlchemyError:
    engine = make_engine(url, **kwargs)  # type: ignore[arg-type]
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    except sa.exc.SQLAlchemyError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{url}: {statement} did not fail")


def _pg(database: str, user: str = "postgres", port: int = 5432) -> str:
    base = sa.engine.make_url(os.environ.get("B24_TEST_POSTGRES_URL", DEFAULT_URLS["postgresql"]))
    return base.set(database=database, username=user, port=port).render_as_string(False)


@pytest.mark.parametrize(
    ("url", "expected", "transient"),
    [
        (_pg("test", port=1), "connection refused", True),
        (_pg("b24_no_such_database"), "the database does not exist", False),
        (_pg("test", user="b24_nobody"), "authentication failed", False),
        ("mysql+pymysql://root@127.0.0.1:1/x", "connection refused", True),
    ],
)
def test_server_failures_name_their_reason(url: str, expected: str, transient: bool) -> None:
    """Refused, missing database, unknown login: the message says which, and whether
    waiting may mend it."""
    error = store_error(_failure(url))
    assert f"failed: {expected} (" in error.message
    assert error.transient is transient


def test_sqlite_locked_and_read_only_name_their_reason(tmp_path: Path) -> None:
    """A write lock held elsewhere reads "locked" (transient); a read-only file "read-only"."""
    path = tmp_path / "c.db"
    holder = make_engine(f"sqlite:///{path}")
    with holder.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    with holder.connect() as held:
        lock_for_write(held)  # BEGIN IMMEDIATE: the write lock, held
        locked = store_error(
            _failure(f"sqlite:///{path}", "INSERT INTO t VALUES (1)", connect_args={"timeout": 0.1})
        )
        held.rollback()
    holder.dispose()
    assert "failed: the database is locked (" in locked.message and locked.transient
    read_only = store_error(
        _failure(f"sqlite:///file:{path}?mode=ro&uri=true", "INSERT INTO t VALUES (1)")
    )
    assert "failed: the database is read-only (" in read_only.message
    assert not read_only.transient


def test_the_cli_says_why_in_one_line(tmp_path: Path) -> None:
    """db upgrade against a port nobody listens on: exit 1, one line, no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    env["B24_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/x"
    done = subprocess.run(
        [sys.executable, "-m", "connector", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: the database in B24_DATABASE_URL failed: connection refused (OperationalError)"
    ]


@pytest.mark.parametrize(
    ("driver_says", "expected", "transient"),
    [
        ("FATAL:  the database system is shutting down", "the server is restarting", True),
        ("FATAL:  sorry, too many clients already", "no connection to spare", True),
        ('FATAL:  too many connections for role "b24"', "no connection to spare", True),
        ("failed to resolve host 'db': Name or service not known", "does not resolve", True),
        (
            "(1226, \"User 'b24' has exceeded the 'max_user_connections' resource\")",
            "no connection to spare",
            True,
        ),
        ('FATAL:  role "nobody" does not exist', "authentication failed", False),
        ('relation "sync_journal" does not exist', "a table is missing", False),
        ("could not serialize access due to concurrent update", "cut short", True),
    ],
)
def test_driver_messages_map_to_a_reason(driver_says: str, expected: str, transient: bool) -> None:
    """What psycopg, PyMySQL and sqlite3 say, as the worker needs it: why, and whether to wait."""
    error = store_error(sa.exc.OperationalError("SELECT 1", {}, Exception(driver_says)))
    assert expected in error.message
    assert error.transient is transient


def test_a_broken_key_names_the_constraint(schema_db_url: str) -> None:
    """A unique key violated (two live links for one ERP key): the line names the key,
    so the operator knows which table and rows to look at."""
    engine = make_engine(schema_db_url)
    insert = (
        "INSERT INTO sync_link (entity, b24_id, erp_key, base, deleted, updated_at) "
        "VALUES ('crm.company', :b, '1', NULL, :f, CURRENT_TIMESTAMP)"
    )
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(insert), {"b": 1, "f": False})
        with pytest.raises(sa.exc.IntegrityError) as failed, engine.begin() as conn:
            conn.execute(sa.text(insert), {"b": 2, "f": False})
    finally:
        engine.dispose()
    said = str(store_error(failed.value))
    assert said.startswith("the database failed: a constraint was violated: ")
    assert "sync_link" in said or "erp_key" in said, said
    assert not store_error(failed.value).transient
