"""Bulk inserts: one ``COPY`` on PostgreSQL, one driver-level ``executemany`` elsewhere,
and on PostgreSQL the new rows' keys reserved up front.

A backfill window inserts hundreds of rows into the entity table, its child tables and
``sync_link``. Through SQLAlchemy's ``executemany`` each row pays for parameter
processing in Python, and on PostgreSQL psycopg sends one statement per row (pipelined,
but the server still runs each one); the entity rows' generated keys then have to be
read back. Here instead:

* :meth:`BulkInsert.reserve_keys` (PostgreSQL) takes the keys from the column's own
  sequence in one ``SELECT nextval(…) FROM generate_series(…)``, so the child rows and the
  links know their owner before anything is written, and nothing is re-read;
* :meth:`BulkInsert.rows` writes a group of rows with one ``COPY`` (PostgreSQL) or one
  ``executemany`` of plain tuples at the driver (SQLite; PyMySQL folds it into multi-row
  ``INSERT`` statements), each value through the column type's own bind processor (JSON
  serialised, datetimes as the dialect stores them, lenient decimals converted), so the
  rows are the ones SQLAlchemy's ``INSERT`` would have written. Row triggers fire for
  ``COPY`` as for ``INSERT`` (the outbox triggers see the connector's session setting).
* :func:`among` is ``IN (…)`` with one parameter: ``= ANY(:array)`` on PostgreSQL, a
  ``json_each`` list on SQLite.

A key column without a sequence, or ``GENERATED ALWAYS``, gets ``None`` from
:meth:`reserve_keys`: the caller reads the keys back as before.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

__all__ = ["BulkInsert", "among", "among_bound", "key_list"]


def among(conn: Connection, column: sa.ColumnElement[Any], values: Sequence[Any]) -> Any:
    """``column IN (values)`` as one parameter instead of hundreds (each of which
    SQLAlchemy renders into the statement at every execution): ``= ANY(:array)`` on
    PostgreSQL, ``IN (SELECT value FROM json_each(:json))`` on SQLite for whole numbers
    and texts (the index on ``column`` is used either way); an expanding ``IN`` elsewhere."""
    form, listed = key_list(conn, values)
    return _among(form, column, None, listed)


def key_list(conn: Connection, values: Sequence[Any]) -> tuple[str, Any]:
    """How ``values`` travel as the one parameter of :func:`among_bound`: its form
    (``array``, ``json`` or ``expanding``, part of a cached statement's key) and value."""
    name = conn.dialect.name
    if name == "postgresql":
        return "array", list(values)
    if name == "sqlite" and values and all(type(v) in _JSON_KEYS for v in values):
        return "json", json.dumps(list(values))
    return "expanding", list(values)


def among_bound(form: str, column: sa.ColumnElement[Any], name: str = "keys") -> Any:
    """:func:`among` with its list left as the parameter ``name``, so that a statement
    built once serves every chunk (SQLAlchemy then skips building it and computing its
    cache key: ~0.2 ms a statement on SQLite); ``form`` comes from :func:`key_list`."""
    return _among(form, column, name, None)


def _among(form: str, column: sa.ColumnElement[Any], name: str | None, value: Any) -> Any:
    if form == "array":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.bindparam(name, value, type_=ARRAY(column.type)))
    if form == "json":
        listed = sa.bindparam(name, value, type_=sa.String())
        each = sa.func.json_each(listed).table_valued("value")
        return column.in_(sa.select(each.c.value).scalar_subquery())
    return column.in_(sa.bindparam(name, value, expanding=True))


_NOTHING = object()
_JSON_KEYS = (int, str)  # what json_each gives back as the same SQLite value (not bool)


class BulkInsert:
    """Per-database knowledge (which key columns have a usable sequence), cached."""

    def __init__(self) -> None:
        self._sequences: dict[tuple[str, str], str | None] = {}

    @staticmethod
    def enabled(conn: Connection) -> bool:
        return conn.dialect.name == "postgresql"

    def reserve_keys(
        self, conn: Connection, table: sa.Table, column: str, count: int
    ) -> list[Any] | None:
        """``count`` new values of ``table.column`` from its sequence, or ``None`` when
        the keys must come from the insert itself."""
        if not self.enabled(conn) or count <= 0:
            return None
        sequence = self._sequence(conn, table.name, column)
        if sequence is None:
            return None
        keys = (
            conn.execute(
                sa.text("SELECT nextval(CAST(:seq AS regclass)) FROM generate_series(1, :n)"),
                {"seq": sequence, "n": count},
            )
            .scalars()
            .all()
        )
        return list(keys)

    def _sequence(self, conn: Connection, table: str, column: str) -> str | None:
        known = (table, column)
        if known not in self._sequences:
            row = conn.execute(
                sa.text(
                    "SELECT pg_get_serial_sequence(:t, :c), a.attidentity "
                    "FROM pg_attribute a WHERE a.attrelid = CAST(:t AS regclass) "
                    "AND a.attname = :c"
                ),
                {"t": conn.dialect.identifier_preparer.quote(table), "c": column},
            ).first()
            usable = row is not None and row[0] is not None and row[1] != "a"
            self._sequences[known] = str(row[0]) if usable and row is not None else None
        return self._sequences[known]

    def rows(self, conn: Connection, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> None:
        """Insert ``rows`` (each with the same keys, as ``executemany`` wants them).

        ``rows`` may be a generator: on PostgreSQL each row is made as ``COPY`` sends the
        one before, so the work that builds the rows runs while the server writes them."""
        stream = iter(rows)
        first = next(stream, None)
        if first is None:
            return
        columns = list(first)
        dialect = conn.dialect
        processors = [
            table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns
        ]
        pick = itemgetter(*columns)
        single = len(columns) == 1
        converted = [(i, p) for i, p in enumerate(processors) if p is not None]
        # JSON keeps None as JSON null unless the column says otherwise, as INSERT does
        json_null = {
            i
            for i, c in enumerate(columns)
            if isinstance(kind := table.c[c].type, sa.JSON) and not kind.none_as_null
        }
        # per column the last value and its conversion: a value shared by every row (the
        # window's ``updated_at``) is converted once, not once per row
        last: list[tuple[Any, Any]] = [(_NOTHING, None)] * len(columns)

        def plain(row: Mapping[str, Any]) -> tuple[Any, ...]:
            values = (pick(row),) if single else pick(row)
            if not converted:  # only the columns whose type has a processor pay for one
                return values
            fixed = list(values)
            for i, p in converted:
                value = fixed[i]
                if value is None and i not in json_null:
                    continue
                seen, out = last[i]
                if value is not seen:
                    out = p(value)
                    last[i] = (value, out)
                fixed[i] = out
            return tuple(fixed)

        tuples = map(plain, itertools.chain((first,), stream))
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in columns)
        if not self.enabled(conn):
            marks = ", ".join(["?" if dialect.paramstyle == "qmark" else "%s"] * len(columns))
            conn.exec_driver_sql(
                f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})", list(tuples)
            )
            return
        sql = f"COPY {quote(table.name)} ({names}) FROM STDIN"
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        try:
            with dbapi.cursor() as cursor, cursor.copy(sql) as copy:
                for values in tuples:
                    copy.write_row(values)
        except dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy raises it for INSERT
            gone = dialect.is_disconnect(exc, conn.connection.dbapi_connection, None)
            if gone:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                sql,
                None,
                exc,
                dialect.loaded_dbapi.Error,
                connection_invalidated=gone,
                dialect=dialect,
            ) from exc
