"""Locks the workers sharing one database take through it.

* :class:`ListenerLock` — one Push&Pull listener per connector: a session-level
  PostgreSQL advisory lock (``pg_try_advisory_lock``) or MariaDB ``GET_LOCK``, held on a
  connection of its own. When the holder dies, its connection closes and the server
  frees the lock; a peer trying every few seconds takes over. SQLite is single-worker:
  the lock is always granted.
* :class:`RecordLocks` — per-record ordering: before a batch fetches the portal's state
  of its entities, it locks them (advisory locks keyed by connector, entity and ID,
  taken in sorted order so two batches never deadlock) and holds them until its commit.
  A peer's batch touching the same record waits, then fetches the newer state.

The connections are synchronous; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from connector.errors import StoreError

__all__ = ["ListenerLock", "RecordLocks", "lock_key"]

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout ran out
MARIADB_LOCKS_PER_STATEMENT = 500
"""``GET_LOCK`` calls in one ``SELECT`` (a 2,500-record window: five round trips)."""


def lock_key(*parts: object) -> int:
    """A signed 64-bit key (PostgreSQL's advisory-lock space) for ``parts``."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_name(database: str | None, *parts: object) -> str:
    """A MariaDB lock name (at most 64 characters). ``GET_LOCK`` names are server-wide,
    so the database is part of it: two databases on one server never share a lock."""
    text_ = ":".join(map(str, (database or "", *parts)))
    return "b24:" + hashlib.blake2b(text_.encode(), digest_size=16).hexdigest()


class ListenerLock:
    """Held by at most one process per connector; :meth:`held` notices a lost lock."""

    def __init__(self, engine: Engine, connector_id: str) -> None:
        self.engine = engine
        self.connector_id = connector_id
        self.dialect = engine.dialect.name
        self._conn: Connection | None = None

    @property
    def shared(self) -> bool:
        """True where the lock really coordinates processes (not SQLite)."""
        return self.dialect in ("postgresql", "mysql", "mariadb")

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.held()
        if not self.shared:
            return True
        conn = self.engine.connect()
        try:
            if self.dialect == "postgresql":
                got = conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"),
                    {"k": lock_key("listener", self.connector_id)},
                ).scalar()
            else:
                got = conn.execute(
                    text("SELECT GET_LOCK(:n, 0)"),
                    {"n": _lock_name(self.engine.url.database, "listener", self.connector_id)},
                ).scalar()
            conn.commit()  # the lock is the session's; no transaction stays open
        except BaseException:
            conn.close()
            raise
        if got in (True, 1):
            self._conn = conn
            return True
        conn.close()
        return False

    def held(self) -> bool:
        """Still ours? (False when the connection, and with it the lock, was lost.)"""
        if not self.shared:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1")).scalar()
            self._conn.commit()
        except SQLAlchemyError:
            log.warning("the listener lock's connection was lost; the lock with it")
            self._drop(invalidate=True)
            return False
        return True

    def release(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            if self.dialect == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_unlock(:k)"),
                    {"k": lock_key("listener", self.connector_id)},
                )
            else:
                conn.execute(
                    text("SELECT RELEASE_LOCK(:n)"),
                    {"n": _lock_name(self.engine.url.database, "listener", self.connector_id)},
                )
            conn.commit()
        except SQLAlchemyError:
            self._drop(invalidate=True)  # ending the session frees the lock
            return
        self._drop()

    def _drop(self, *, invalidate: bool = False) -> None:
        """Give the connection up; ``invalidate`` ends its session (and any lock it still
        holds) instead of handing it back to the pool."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if invalidate:
                conn.invalidate()
            conn.close()
        except SQLAlchemyError:
            conn.invalidate()


def _refused(records: list[tuple[str, int]], timeout_s: float) -> StoreError:
    (first, lo), (last, hi) = records[0], records[-1]
    span = f"{first} {lo}" if len(records) == 1 else f"{first} {lo} .. {last} {hi}"
    return StoreError(
        f"a record lock among {span} was not granted in {timeout_s:g} s (a peer's batch holds it)",
        transient=True,
    )


class RecordLocks:
    """Advisory locks on (connector, entity, ID) held from before a fetch until a commit."""

    def __init__(self, engine: Engine, connector_id: str) -> None:
        self.engine = engine
        self.connector_id = connector_id
        self.dialect = engine.dialect.name

    @property
    def shared(self) -> bool:
        return self.dialect in ("postgresql", "mysql", "mariadb")

    def acquire(
        self, records: Iterable[tuple[str, int]], timeout_s: float = 120.0
    ) -> Connection | None:
        """Lock every record (blocking, sorted order); the returned connection holds the
        locks until :meth:`release`. None where locks are not needed (SQLite: one worker)."""
        targets = sorted(set(records))
        if not self.shared or not targets:
            return None
        conn = self.engine.connect()
        try:
            if self.dialect == "postgresql":
                conn.begin()
                conn.execute(text(f"SET LOCAL lock_timeout = '{int(timeout_s * 1000)}ms'"))
                keys = [lock_key(self.connector_id, e, i) for e, i in targets]
                try:
                    conn.execute(
                        text(
                            "SELECT pg_advisory_xact_lock(k) "
                            "FROM unnest(CAST(:keys AS bigint[])) AS k"
                        ),
                        {"keys": keys},
                    )
                except OperationalError as exc:
                    if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                        raise
                    raise _refused(targets, timeout_s) from exc
            else:
                # one statement per chunk; AND stops at the first lock not granted, so
                # the locks are taken in sorted order and none after a refusal
                for start in range(0, len(targets), MARIADB_LOCKS_PER_STATEMENT):
                    chunk = targets[start : start + MARIADB_LOCKS_PER_STATEMENT]
                    names = {
                        f"n{i}": _lock_name(self.engine.url.database, self.connector_id, e, ident)
                        for i, (e, ident) in enumerate(chunk)
                    }
                    calls = " AND ".join(f"GET_LOCK(:{key}, :t)" for key in names)
                    got = conn.execute(text(f"SELECT {calls}"), {**names, "t": timeout_s}).scalar()
                    if got != 1:
                        raise _refused(chunk, timeout_s)
        except BaseException:
            self.release(conn)
            raise
        return conn

    def release(self, conn: Connection | None) -> None:
        if conn is None:
            return
        try:
            if self.dialect == "postgresql":
                conn.rollback()  # ends the transaction: the xact locks go with it
            else:
                conn.execute(text("SELECT RELEASE_ALL_LOCKS()"))
                conn.commit()
        except SQLAlchemyError:
            conn.invalidate()
        finally:
            conn.close()
