"""The shared leaky bucket on ``sync_rate_bucket``: one row per portal.

Several workers behind one IP share the portal's bucket, so on PostgreSQL and MariaDB
they share our mirror of it too: each reservation locks the portal's row
(``SELECT … FOR UPDATE``), applies :func:`connector.core.rate_bucket.reserve` and writes
the new level back in the same short transaction. Time is wall-clock unix seconds, the
same in every process. On SQLite the same row is booked under ``BEGIN IMMEDIATE``, so
processes sharing one file (a restart, ``run`` beside ``backfill``) share the bucket too.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from connector.adapters.store.database import lock_for_write
from connector.adapters.store.db_errors import store_error
from connector.adapters.store.tables import sync_rate_bucket
from connector.core.rate_bucket import BucketProfile, BucketState, penalize, reserve

__all__ = ["SqlBucketLedger", "ledger_for"]


class SqlBucketLedger:
    """A :class:`~connector.adapters.rate_governor.BucketLedger` in the database."""

    blocking = True

    def __init__(self, engine: Engine, portal: str) -> None:
        self.engine = engine
        self.portal = portal

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

        Two workers creating the row at once collide (a duplicate key, or a deadlock on
        MariaDB's gap lock); the loser simply tries again and finds the row.
        """
        for attempt in range(3):
            try:
                with self.engine.connect() as conn:
                    lock_for_write(conn)  # SQLite: the write lock, up front
                    current = self._read(conn, lock=True)
                    new = change(current or BucketState())
                    values = {
                        "level": new.level,
                        "updated_at": new.updated_at,
                        "slowdown_until": new.slowdown_until,
                    }
                    if current is None:
                        conn.execute(insert(sync_rate_bucket).values(portal=self.portal, **values))
                    else:
                        conn.execute(
                            update(sync_rate_bucket)
                            .where(sync_rate_bucket.c.portal == self.portal)
                            .values(**values)
                        )
                    conn.commit()
                return
            except (IntegrityError, OperationalError) as exc:
                if attempt == 2:
                    raise store_error(exc, what="the shared rate bucket") from exc
            except SQLAlchemyError as exc:
                raise store_error(exc, what="the shared rate bucket") from exc

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
