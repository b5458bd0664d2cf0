"""``sync_cursor``: named positions of the long operations, so a kill resumes them.

``backfill:<entity>`` holds the last portal ID loaded (``finished`` once the entity is
done); ``reconcile:<entity>`` and ``bindings:<entity>`` the scheduled reconciles
(``service/reconcile.py``). A write is one dialect upsert, so two workers writing the same
cursor at once never collide on its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from connector.adapters.store.tables import sync_cursor
from connector.errors import ConfigError

__all__ = [
    "IdCursor",
    "cursors_named",
    "finish_cursor",
    "finish_id_cursor",
    "open_id_cursor",
    "write_cursor",
]


@dataclass(frozen=True)
class IdCursor:
    """An ID cursor as read: the last ID loaded, and whether the load finished."""

    last_id: int
    finished: bool


def write_cursor(
    conn: Connection, name: str, value: int | str, *, finished: bool, now: datetime
) -> None:
    """Set ``sync_cursor`` ``name`` to ``value``: one upsert, so two workers writing the
    same cursor at once (start-up bindings notes) never collide on its key."""
    values = {"value": str(value), "finished": finished, "updated_at": now}
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        mine = mysql_insert(sync_cursor).values(name=name, **values)
        conn.execute(mine.on_duplicate_key_update(**values))
        return
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    statement = upsert(sync_cursor).values(name=name, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_=values))


def open_id_cursor(engine: Engine, name: str, *, restart: bool, now: datetime) -> IdCursor:
    """The ID cursor ``name`` (from 0 when absent, or reset to 0 with ``restart``)."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(sync_cursor.c.value, sync_cursor.c.finished).where(sync_cursor.c.name == name)
        ).first()
        if restart:
            write_cursor(conn, name, 0, finished=False, now=now)
            return IdCursor(0, False)
    if row is None:
        return IdCursor(0, False)
    try:
        last = int(row[0] or 0)
    except ValueError:
        raise ConfigError(
            f"sync_cursor {name} holds {row[0]!r}, not an ID; run backfill --restart"
        ) from None
    return IdCursor(last, bool(row[1]))


def finish_id_cursor(engine: Engine, name: str, last_id: int, *, now: datetime) -> None:
    """The load ``name`` is done, up to ``last_id``."""
    with engine.begin() as conn:
        write_cursor(conn, name, last_id, finished=True, now=now)


def finish_cursor(engine: Engine, name: str, *, now: datetime) -> None:
    """Mark the cursor ``name`` finished, keeping its value (no row: nothing to do)."""
    with engine.begin() as conn:
        conn.execute(
            sync_cursor.update()
            .where(sync_cursor.c.name == name)
            .values(finished=True, updated_at=now)
        )


def cursors_named(engine: Engine, prefix: str) -> dict[str, tuple[str | None, bool]]:
    """Every cursor whose name starts with ``prefix``: the rest of its name → (value,
    finished)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sync_cursor.c.name, sync_cursor.c.value, sync_cursor.c.finished).where(
                sync_cursor.c.name.like(f"{prefix}%")
            )
        ).all()
    return {str(name)[len(prefix) :]: (value, bool(done)) for name, value, done in rows}
