"""Bulk inserts (``adapters/store/bulk_insert.py``): COPY on PostgreSQL, a driver-level
``executemany`` elsewhere, keys reserved from the sequence — the rows must be the ones
SQLAlchemy's own ``INSERT`` writes, and the ERP's next own insert must never collide."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from connector.adapters.store.bulk_insert import BulkInsert, among, among_bound, key_list
from connector.adapters.store.database import make_engine
from connector.adapters.store.erp_tables import LenientNumeric

NOW = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)


def twins(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    def table(name: str) -> sa.Table:
        return sa.Table(
            name,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("title", sa.String(100)),
            sa.Column("base", sa.JSON),
            sa.Column("deleted", sa.Boolean),
            sa.Column("at", sa.DateTime(timezone=True)),
            sa.Column("day", sa.Date),
            sa.Column("amount", LenientNumeric(12, 2)),
            sa.Column("n", sa.BigInteger),
        )

    return table("bulk_by_copy"), table("bulk_by_insert")


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


ROWS: list[dict[str, Any]] = [
    {
        "title": "Ünïcode, tab\tand \\ backslash",
        "base": {"TITLE": "x", "PHONE": [["WORK", "+1 555"]], "n": None},
        "deleted": True,
        "at": NOW,
        "day": date(2026, 2, 28),
        "amount": "12.50",  # lenient: a string the column's processor turns into a Decimal
        "n": 2**40,
    },
    {
        "title": None,
        "base": None,
        "deleted": False,
        "at": None,
        "day": None,
        "amount": None,
        "n": None,
    },
]


def test_rows_land_as_sqlalchemys_insert_writes_them(engine: sa.Engine) -> None:
    """The same rows through :meth:`BulkInsert.rows` and through ``table.insert()`` read
    back identical, on every backend: JSON, booleans, time zones, NULLs, text that needs
    escaping in COPY's text format."""
    metadata = sa.MetaData()
    bulk_t, plain_t = twins(metadata)
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            BulkInsert().rows(conn, bulk_t, ROWS)
            conn.execute(plain_t.insert(), ROWS)
        with engine.connect() as conn:
            got = [
                dict(r) for r in conn.execute(sa.select(bulk_t).order_by(bulk_t.c.id)).mappings()
            ]
            want = [
                dict(r) for r in conn.execute(sa.select(plain_t).order_by(plain_t.c.id)).mappings()
            ]
        assert got == want
        assert got[0]["base"] == ROWS[0]["base"] and got[0]["amount"] == Decimal("12.50")
    finally:
        metadata.drop_all(engine)


def test_rows_from_a_generator_land_as_a_lists_would_and_a_failing_one_writes_nothing(
    engine: sa.Engine,
) -> None:
    """``rows`` may be a generator (the apply builds each link's base while COPY sends the
    rows before it): every row lands, in order; a generator that raises part-way leaves
    no row once its transaction rolls back."""
    metadata = sa.MetaData()
    bulk_t, _ = twins(metadata)
    metadata.create_all(engine)
    try:
        pad = "x" * 80  # ~90 bytes a row: 1,200 rows are several of psycopg's 32 KB pieces
        titles = [f"row {n} {pad}" for n in range(1200)]
        with engine.begin() as conn:
            BulkInsert().rows(conn, bulk_t, ({"title": t, "n": len(t)} for t in titles))

        def failing() -> Iterator[dict[str, Any]]:
            for n in range(900):
                if n == 800:
                    raise ValueError("a record that does not convert")
                yield {"title": f"late {n} {pad}", "n": n}  # ~70 KB sent before it fails

        with pytest.raises(ValueError, match="does not convert"), engine.begin() as conn:
            BulkInsert().rows(conn, bulk_t, failing())
        with engine.connect() as conn:
            got = conn.execute(sa.select(bulk_t.c.title).order_by(bulk_t.c.id)).scalars().all()
        assert got == titles
    finally:
        metadata.drop_all(engine)


@pytest.mark.backends("postgresql")
def test_reserved_keys_come_from_the_sequence_so_the_erps_next_insert_does_not_collide(
    engine: sa.Engine,
) -> None:
    """Keys reserved for a window are the sequence's own: rows written with them, then an
    ERP ``INSERT`` without a key, get distinct keys."""
    metadata = sa.MetaData()
    table, _ = twins(metadata)
    metadata.create_all(engine)
    try:
        bulk = BulkInsert()
        with engine.begin() as conn:
            keys = bulk.reserve_keys(conn, table, "id", 3)
            assert keys is not None and len(set(keys)) == 3
            bulk.rows(conn, table, [{"id": k, "title": f"w{k}"} for k in keys])
            conn.execute(sa.text("INSERT INTO bulk_by_copy (title) VALUES ('erp')"))
            ids = conn.execute(sa.select(table.c.id)).scalars().all()
        assert len(set(ids)) == 4 and max(ids) > max(keys)
    finally:
        metadata.drop_all(engine)


@pytest.mark.backends("postgresql")
def test_a_generated_always_key_is_left_to_the_insert(engine: sa.Engine) -> None:
    """A key column ``GENERATED ALWAYS AS IDENTITY`` refuses given values: no reservation,
    the caller reads the keys back instead."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE bulk_always (id integer GENERATED ALWAYS AS IDENTITY "
                "PRIMARY KEY, title text)"
            )
        )
    try:
        table = sa.Table("bulk_always", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            assert BulkInsert().reserve_keys(conn, table, "id", 2) is None
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE bulk_always"))


def test_reserve_keys_is_postgresql_only_and_among_matches_in(engine: sa.Engine) -> None:
    """Elsewhere the keys come from the insert (``None``); ``among`` selects what ``IN``
    selects (``= ANY`` on PostgreSQL)."""
    metadata = sa.MetaData()
    table, _ = twins(metadata)
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            reserved = BulkInsert().reserve_keys(conn, table, "id", 2)
            assert (reserved is None) == (engine.dialect.name != "postgresql")
            conn.execute(table.insert(), [{"title": t} for t in "abcde"])
            picked = conn.execute(
                sa.select(table.c.title).where(among(conn, table.c.title, ["b", "d", "z"]))
            ).scalars()
            assert sorted(picked) == ["b", "d"]
            ids = conn.execute(sa.select(table.c.id).order_by(table.c.id)).scalars().all()
            for wanted in ([ids[1], ids[3], 10**9], [str(ids[1]), str(ids[3])], []):
                got = conn.execute(
                    sa.select(table.c.id).where(among(conn, table.c.id, wanted))
                ).scalars()
                assert sorted(got) == [i for i in ids if i in {int(w) for w in wanted}], wanted
    finally:
        metadata.drop_all(engine)


@pytest.mark.backends("sqlite")
def test_among_on_sqlite_is_one_parameter_whatever_the_count() -> None:
    """Five hundred IDs travel as one JSON text (``json_each``), not five hundred
    parameters that SQLAlchemy renders into the statement each time; a value JSON would
    not give back as itself (a bool) falls back to a plain ``IN``."""
    engine = sa.create_engine("sqlite://")
    column = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer)).c.id
    with engine.connect() as conn:
        listed = sa.select(column).where(among(conn, column, list(range(500))))
        compiled = listed.compile(dialect=engine.dialect)
        assert "json_each" in str(compiled) and len(compiled.params) == 1
        plain = sa.select(column).where(among(conn, column, [True, 2]))
        assert "json_each" not in str(plain.compile(dialect=engine.dialect))


def test_a_database_error_is_sqlalchemys_as_for_insert(engine: sa.Engine) -> None:
    """A duplicate key in a bulk insert raises ``sqlalchemy.exc.IntegrityError`` on every
    backend (COPY's own psycopg error would slip past the callers' handlers: a backfill
    retrying a window a drain linked first, the worker waiting out the database)."""
    metadata = sa.MetaData()
    table, _ = twins(metadata)
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            BulkInsert().rows(conn, table, [{"id": 1, "title": "a"}])
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            BulkInsert().rows(conn, table, [{"id": 1, "title": "again"}])
    finally:
        metadata.drop_all(engine)


def test_a_json_none_is_stored_as_sqlalchemys_insert_stores_it(engine: sa.Engine) -> None:
    """``None`` in a JSON column is JSON ``null`` through both paths (not SQL NULL in one)."""
    metadata = sa.MetaData()
    bulk_t, plain_t = twins(metadata)
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            BulkInsert().rows(conn, bulk_t, [{"title": "n", "base": None}])
            conn.execute(plain_t.insert(), [{"title": "n", "base": None}])
        with engine.connect() as conn:
            nulls = [
                conn.execute(sa.select(sa.func.count()).where(t.c.base.is_(None))).scalar()
                for t in (bulk_t, plain_t)
            ]
        assert nulls[0] == nulls[1]
    finally:
        metadata.drop_all(engine)


def test_a_statement_built_once_selects_each_chunk_as_in_would(engine: sa.Engine) -> None:
    """``among_bound`` leaves the list as a parameter: one statement per form serves any
    list of keys (numbers, texts), selecting what ``IN`` selects on every backend."""
    metadata = sa.MetaData()
    table, _ = twins(metadata)
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"title": t} for t in "abcde"])
            ids = conn.execute(sa.select(table.c.id).order_by(table.c.id)).scalars().all()
            built: dict[tuple[str, str], sa.Select[Any]] = {}
            for column, wanted, expected in (
                ("id", [ids[0], ids[4]], [ids[0], ids[4]]),
                ("id", [ids[2]], [ids[2]]),
                ("title", ["b", "e", "z"], [ids[1], ids[4]]),
            ):
                form, listed = key_list(conn, wanted)
                stmt = built.setdefault(
                    (form, column),
                    sa.select(table.c.id).where(among_bound(form, table.c[column])),
                )
                got = conn.execute(stmt, {"keys": listed}).scalars().all()
                assert sorted(got) == expected, (column, wanted)
            assert len(built) == 2  # the second list of numbers reused the first statement
    finally:
        metadata.drop_all(engine)
