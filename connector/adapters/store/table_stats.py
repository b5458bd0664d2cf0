"""Planner statistics kept fresh while a large load fills new tables (PostgreSQL).

A table created by ``db upgrade`` has never been analyzed; during a backfill the planner
keeps guessing it is tiny and answers ``b24_id IN (…500 ids…)`` with a sequential scan,
so each window costs more than the one before (quadratic: 3,400 rec/s at 5k, 1,250 at
100k). :class:`TableStats` counts the rows the connector inserts per table and runs
``ANALYZE`` when they reach the size the table had at its last analysis (at least
``first`` rows): about log2(N) analyses over a load of N rows, each a sample, so the
cost per record stays flat. It runs inside the apply transaction, which sees its own
rows, and takes a lock that does not block other writers.

MariaDB's InnoDB keeps persistent statistics and recalculates them on its own after
10 % of a table changed (and its ``ANALYZE TABLE`` would commit our transaction), and
SQLite's planner prefers the index without statistics: nothing to do there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Connection

__all__ = ["TableStats"]

log = logging.getLogger(__name__)


class TableStats:
    def __init__(self, first: int = 2000) -> None:
        self.first = first
        self._since: dict[str, int] = {}
        self._size: dict[str, int] = {}

    def inserted(self, conn: Connection, tables: Iterable[str], rows: int) -> None:
        """``rows`` new rows went into each of ``tables`` in this transaction."""
        if conn.dialect.name != "postgresql" or rows <= 0:
            return
        for table in tables:
            since = self._since.get(table, 0) + rows
            size = self._size.get(table, 0)
            if since < max(self.first, size):
                self._since[table] = since
                continue
            quoted = conn.dialect.identifier_preparer.quote(table)
            conn.exec_driver_sql(f"ANALYZE {quoted}")
            self._size[table] = size + since
            self._since[table] = 0
            log.debug("analyzed %s at about %d rows", table, size + since)
