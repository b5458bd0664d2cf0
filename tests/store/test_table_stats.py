"""Planner statistics during a large load: ANALYZE as a new table doubles (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from connector.adapters.store.database import make_engine
from connector.adapters.store.table_stats import TableStats


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE loaded (id INTEGER PRIMARY KEY, b24_id INTEGER)"))
    yield engine
    engine.dispose()


def load(engine: sa.Engine, stats: TableStats, start: int, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO loaded (id, b24_id) VALUES (:i, :i)"),
            [{"i": i} for i in range(start, start + rows)],
        )
        stats.inserted(conn, ["loaded"], rows)


def reltuples(engine: sa.Engine) -> float:
    with engine.connect() as conn:
        value = conn.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE relname = 'loaded'")
        ).scalar_one()
    return float(value)


@pytest.mark.backends("postgresql")
def test_a_growing_table_is_analyzed_each_time_it_doubles(engine: sa.Engine) -> None:
    stats = TableStats(first=100)
    assert reltuples(engine) <= 0  # never analyzed: the planner guesses
    load(engine, stats, 0, 60)
    assert reltuples(engine) <= 0  # below the first threshold
    load(engine, stats, 60, 60)
    assert reltuples(engine) == 120  # analyzed at 120 rows
    load(engine, stats, 120, 100)
    assert reltuples(engine) == 120  # 100 more is less than the 120 it had
    load(engine, stats, 220, 30)
    assert reltuples(engine) == 250  # 130 since: doubled, analyzed again


@pytest.mark.backends("sqlite", "mariadb")
def test_elsewhere_nothing_is_run_inside_the_transaction(engine: sa.Engine) -> None:
    """MariaDB's ANALYZE TABLE would commit the apply transaction; SQLite needs none."""
    stats = TableStats(first=1)
    with engine.connect() as conn:
        trans = conn.begin()
        conn.execute(sa.text("INSERT INTO loaded (id, b24_id) VALUES (1, 1)"))
        stats.inserted(conn, ["loaded"], 1)
        trans.rollback()
        assert conn.execute(sa.text("SELECT count(*) FROM loaded")).scalar_one() == 0
