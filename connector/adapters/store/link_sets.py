"""Sets of portal IDs read from ``sync_link``, for backfill and reconcile.

* :func:`live_links_between` — the live links in an ID span (what a window's read should
  have returned; those it did not are deleted records).
* :func:`links_written_since` — which of some IDs had their link written at or after a
  time, locking those links for the caller's transaction.
* :func:`unlinked` — which of some portal IDs no live link names (records to load).
* :func:`ever_linked` — whether an entity was ever synced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from connector.adapters.store.bulk_insert import among
from connector.adapters.store.tables import sync_link

__all__ = ["ever_linked", "links_written_since", "live_links_between", "unlinked"]

LINK_CHUNK = 500  # IDs per IN (...) when reading links; far below every backend's limit


def _chunk(conn: Connection, count: int) -> int:
    """IDs per query: every one at once on PostgreSQL (one array parameter), else
    :data:`LINK_CHUNK` per ``IN`` list."""
    return max(1, count) if conn.dialect.name == "postgresql" else LINK_CHUNK


def as_utc(value: datetime) -> datetime:
    """A stored time as aware UTC (SQLite and MariaDB hand back naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def live_links_between(conn: Connection, entity: str, lo: int, hi: int) -> list[int]:
    """Portal IDs of the live links in ``(lo, hi]``, ascending."""
    if hi <= lo:
        return []
    query = (
        sa.select(sync_link.c.b24_id)
        .where(
            sync_link.c.entity == entity,
            sync_link.c.deleted.is_(False),
            sync_link.c.b24_id > lo,
            sync_link.c.b24_id <= hi,
        )
        .order_by(sync_link.c.b24_id)
    )
    return [int(b24_id) for (b24_id,) in conn.execute(query)]


def links_written_since(
    conn: Connection, entity: str, ids: Sequence[int], cutoff: datetime
) -> set[int]:
    """Those of ``ids`` whose link was written at or after ``cutoff`` (aware UTC); every
    link read is locked (``FOR UPDATE``) until the caller's transaction ends."""
    fresh: set[int] = set()
    step = _chunk(conn, len(ids))
    for start in range(0, len(ids), step):
        chunk = ids[start : start + step]
        query = (
            sa.select(sync_link.c.b24_id, sync_link.c.updated_at)
            .where(sync_link.c.entity == entity, among(conn, sync_link.c.b24_id, chunk))
            .with_for_update()
        )
        for b24_id, updated_at in conn.execute(query):
            if updated_at is not None and as_utc(updated_at) >= cutoff:
                fresh.add(int(b24_id))
    return fresh


def unlinked(engine: Engine, entity: str, ids: Sequence[int]) -> list[int]:
    """Those of ``ids`` (in their order) that no live link names."""
    linked: set[int] = set()
    with engine.connect() as conn:
        for start in range(0, len(ids), LINK_CHUNK):
            chunk = ids[start : start + LINK_CHUNK]
            linked.update(
                int(i)
                for i in conn.execute(
                    sa.select(sync_link.c.b24_id).where(
                        sync_link.c.entity == entity,
                        sync_link.c.deleted.is_(False),
                        sync_link.c.b24_id.in_(chunk),
                    )
                ).scalars()
            )
    return [i for i in ids if i not in linked]


def ever_linked(engine: Engine, entity: str) -> bool:
    """Whether any link (live or dead) of ``entity`` exists."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(sync_link.c.b24_id).where(sync_link.c.entity == entity).limit(1)
        ).first()
    return found is not None
