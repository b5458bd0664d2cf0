"""Record errors (``sync_record_error``) as the holds and the operator read them.

A record refused for a bad value is kept here, open, and its queue record held in the
portal (``ErpWriter.record_error`` writes the row, ``resolve_errors`` closes it). What
reads them: the open errors to retry (with what the portal held when it was refused),
the MESSAGE_IDs they hold, the resolved ones whose held record is not released yet
(marked released once it is), and ``errors list|retry`` (a listing, one error's status).
Counting the open ones is :func:`connector.adapters.store.backlog.open_record_errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from connector.adapters.store.tables import sync_record_error

__all__ = [
    "error_list",
    "error_status",
    "mark_errors_released",
    "open_error_message_ids",
    "open_errors",
    "unreleased_resolved_errors",
]


def open_errors(conn: Connection, error_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Open errors (only ``error_ids`` when given): id, entity, b24_id, message_id and the
    payload the record was refused with."""
    where = [sync_record_error.c.status == "open"]
    if error_ids is not None:
        where.append(sync_record_error.c.id.in_(list(error_ids)))
    return [
        dict(r)
        for r in conn.execute(
            sa.select(
                sync_record_error.c.id,
                sync_record_error.c.entity,
                sync_record_error.c.b24_id,
                sync_record_error.c.message_id,
                sync_record_error.c.payload,
            ).where(*where)
        ).mappings()
    ]


def open_error_message_ids(conn: Connection) -> set[str]:
    """The MESSAGE_IDs open record errors hold in the portal."""
    return {
        m
        for m in conn.execute(
            sa.select(sync_record_error.c.message_id).where(sync_record_error.c.status == "open")
        ).scalars()
        if m
    }


def unreleased_resolved_errors(conn: Connection) -> list[tuple[int, str | None]]:
    """Errors resolved since (the record synced) whose held queue record is not released
    yet: (id, message_id) each."""
    rows = conn.execute(
        sa.select(sync_record_error.c.id, sync_record_error.c.message_id).where(
            sync_record_error.c.status == "resolved",
            sync_record_error.c.released_at.is_(None),
        )
    ).all()
    return [(r[0], r[1]) for r in rows]


def mark_errors_released(conn: Connection, error_ids: Sequence[int], now: datetime) -> None:
    """Their held queue records were released: stamp ``released_at``."""
    conn.execute(
        sync_record_error.update()
        .where(sync_record_error.c.id.in_(list(error_ids)))
        .values(released_at=now)
    )


def error_list(conn: Connection, *, everything: bool = False) -> list[dict[str, Any]]:
    """Open errors oldest first (every one with ``everything``), every column."""
    query = sa.select(sync_record_error).order_by(sync_record_error.c.id)
    if not everything:
        query = query.where(sync_record_error.c.status == "open")
    return [dict(r) for r in conn.execute(query).mappings()]


def error_status(conn: Connection, error_id: int) -> str | None:
    """The status of error ``error_id`` (open, resolved), or None when there is none."""
    value = conn.execute(
        sa.select(sync_record_error.c.status).where(sync_record_error.c.id == error_id)
    ).scalar_one_or_none()
    return None if value is None else str(value)
