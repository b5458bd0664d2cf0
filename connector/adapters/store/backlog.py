"""What waits in the bookkeeping tables, counted: read by ``/metrics`` at each scrape,
by ``status`` and by ``errors retry``.

Outbox rows not done yet by status and the oldest pending one (the push lag), open
conflicts, open record errors, and drain batches (``sync_journal``) not cleared yet.
Each function is one statement on the caller's connection.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from connector.adapters.store.tables import (
    sync_conflict,
    sync_journal,
    sync_outbox,
    sync_record_error,
)

__all__ = [
    "oldest_pending_at",
    "open_conflicts",
    "open_record_errors",
    "outbox_by_status",
    "unfinished_batches",
]


def outbox_by_status(conn: Connection) -> dict[str, int]:
    """Outbox rows per status, done rows left out (a status with none is absent)."""
    return {
        str(status): int(n)
        for status, n in conn.execute(
            sa.select(sync_outbox.c.status, sa.func.count())
            .where(sync_outbox.c.status != "done")
            .group_by(sync_outbox.c.status)
        ).all()
    }


def oldest_pending_at(conn: Connection) -> Any:
    """``created_at`` of the oldest pending outbox row as the driver returns it (naive on
    some backends), or None."""
    return conn.execute(
        sa.select(sa.func.min(sync_outbox.c.created_at)).where(sync_outbox.c.status == "pending")
    ).scalar_one_or_none()


def _count(conn: Connection, table: sa.Table, *where: Any) -> int:
    return int(
        conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
    )


def open_conflicts(conn: Connection) -> int:
    return _count(conn, sync_conflict, sync_conflict.c.status == "open")


def open_record_errors(conn: Connection) -> int:
    return _count(conn, sync_record_error, sync_record_error.c.status == "open")


def unfinished_batches(conn: Connection) -> int:
    """Journal entries reserved or applied, not cleared yet."""
    return _count(conn, sync_journal, sync_journal.c.state != "cleared")
