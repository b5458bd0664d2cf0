"""The shared leaky bucket on ``sync_rate_bucket``: one row per portal.

Several workers behind one IP share the portal's bucket, so on PostgreSQL and MariaDB
they share our mirror of it too: each reservation locks the portal's row
(``SELECT … FOR UPDATE``), applies :func:`connector.core.rate_bucket.reserve` and writes
the new level back in the same short transaction. Time is wall-clock unix seconds, the
same in every process. On SQLite the same row is booked under ``BEGIN IMMEDIATE``, so
processes sharing one file (a restart, ``run`` beside ``backfill``) share the bucket too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine, Insert, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from connector.adapters.store.database import lock_for_write
from connector.adapters.store.db_errors import is_transient, store_error
from connector.adapters.store.tables import sync_rate_bucket
from connector.core.rate_bucket import BucketProfile, BucketState, penalize, reserve
from connector.errors import StoreError

__all__ = ["SqlBucketLedger", "ledger_for"]

_TRIES = 8


class SqlBucketLedger:
    """A :class:`~connector.adapters.rate_governor.BucketLedger` in the database."""

    blocking = True

    def __init__(self, engine: Engine, portal: str) -> None:
        self.engine = engine
        self.portal = portal
        self._row_known = False  # set once this process has seen the row exist

    def reserve(self, now: float, profile: BucketProfile) -> float:
        """Book one request; return the seconds to wait before sending it."""
        wait = 0.0

        def change(state: BucketState) -> BucketState:
            nonlocal wait
            state, wait = reserve(state, now, profile)
            return state

        self._update(change)
        return wait

    def penalize(self, now: float, profile: BucketProfile) -> None:
        """The portal answered "too many": mark the shared bucket full and slow down."""
        self._update(lambda state: penalize(state, now, profile))

    def state(self) -> BucketState:
        """The stored state (an empty bucket when there is no row yet)."""
        with self.engine.connect() as conn:
            return self._read(conn, lock=False) or BucketState()

    def _update(self, change: Callable[[BucketState], BucketState]) -> None:
        """Read-modify-write the portal's row under its lock.

        The row is created first by an insert that ignores a duplicate, so the locking read
        always finds a row: a ``FOR UPDATE`` on a missing row takes MariaDB's gap lock, and
        two workers holding it and then inserting deadlock. A deadlock or lock timeout that
        still happens (the database chose us as its victim) is tried again after a short,
        jittered pause; a failure that outlasts the tries is a transient ``StoreError``.
        """
        for attempt in range(_TRIES):
            try:
                with self.engine.connect() as conn:
                    self._ensure_row(conn)
                    lock_for_write(conn)  # SQLite: the write lock, up front
                    current = self._read(conn, lock=True)
                    if current is None:  # deleted since we created it: create it again
                        self._row_known = False
                        conn.rollback()
                        continue
                    new = change(current)
                    conn.execute(
                        update(sync_rate_bucket)
                        .where(sync_rate_bucket.c.portal == self.portal)
                        .values(
                            level=new.level,
                            updated_at=new.updated_at,
                            slowdown_until=new.slowdown_until,
                        )
                    )
                    conn.commit()
                return
            except OperationalError as exc:
                if attempt == _TRIES - 1 or not is_transient(exc):
                    raise store_error(exc, what="the shared rate bucket") from exc
                time.sleep(random.uniform(0.0, 0.01 * (attempt + 1)))
            except SQLAlchemyError as exc:
                raise store_error(exc, what="the shared rate bucket") from exc
        raise StoreError(f"the shared rate bucket of {self.portal} keeps vanishing", transient=True)

    def _ensure_row(self, conn: Connection) -> None:
        """The portal's row, created empty if missing, in its own short transaction."""
        if self._row_known:
            return
        empty = {"portal": self.portal, "level": 0.0, "updated_at": 0.0, "slowdown_until": 0.0}
        statement: Insert
        if conn.dialect.name == "postgresql":
            statement = postgresql.insert(sync_rate_bucket).values(empty).on_conflict_do_nothing()
        else:  # SQLite: INSERT OR IGNORE; MariaDB: INSERT IGNORE
            prefix = "OR IGNORE" if conn.dialect.name == "sqlite" else "IGNORE"
            statement = insert(sync_rate_bucket).values(empty).prefix_with(prefix)
        conn.execute(statement)
        conn.commit()
        self._row_known = True

    def _read(self, conn: Connection, *, lock: bool) -> BucketState | None:
        query = select(sync_rate_bucket).where(sync_rate_bucket.c.portal == self.portal)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            return None
        return BucketState(float(row.level), float(row.updated_at), float(row.slowdown_until))


def ledger_for(engine: Engine, portal: str) -> SqlBucketLedger:
    """The ledger on every backend, SQLite included: a restarted process, and ``run``,
    ``backfill`` and ``sync --once`` side by side, go on from the bucket as it is instead
    of an empty one (which drew 503s from a portal whose real bucket was full)."""
    return SqlBucketLedger(engine, portal)
