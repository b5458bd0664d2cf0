"""Read-only looks at ``sync_outbox`` for the operator and ``/metrics`` (``OutboxStore``
mixes them in): rows per status, the oldest pending row, a listing, one row's status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from connector.adapters.store.tables import sync_outbox

__all__ = ["DONE", "FAILED", "HELD", "PENDING", "OutboxViews"]

PENDING, DONE, FAILED, HELD = "pending", "done", "failed", "held"


class OutboxViews:
    engine: Engine

    def counts(self) -> dict[str, int]:
        """Rows per status, for ``status`` (done rows are not counted)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sync_outbox.c.status, sa.func.count())
                .where(sync_outbox.c.status != DONE)
                .group_by(sync_outbox.c.status)
            ).all()
        out = {PENDING: 0, FAILED: 0, HELD: 0}
        out.update({str(r[0]): int(r[1]) for r in rows})
        return out

    def oldest_pending(self) -> datetime | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.min(sync_outbox.c.created_at)).where(
                    sync_outbox.c.status == PENDING
                )
            ).scalar_one_or_none()
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value if isinstance(value, datetime) else None

    def rows(self, *, statuses: Sequence[str], limit: int = 200) -> list[dict[str, Any]]:
        """Rows in ``statuses``, oldest first, as plain dicts (for ``outbox list``)."""
        with self.engine.connect() as conn:
            result = conn.execute(
                sa.select(
                    sync_outbox.c.id,
                    sync_outbox.c.entity,
                    sync_outbox.c.erp_key,
                    sync_outbox.c.op,
                    sync_outbox.c.changed,
                    sync_outbox.c.status,
                    sync_outbox.c.attempts,
                    sync_outbox.c.error_code,
                    sync_outbox.c.last_error,
                    sync_outbox.c.note,
                    sync_outbox.c.created_at,
                )
                .where(sync_outbox.c.status.in_(list(statuses)))
                .order_by(sync_outbox.c.id)
                .limit(limit)
            ).mappings()
            return [dict(r) for r in result]

    def status_of(self, row_id: int) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(sync_outbox.c.status).where(sync_outbox.c.id == row_id)
            ).scalar_one_or_none()
        return None if value is None else str(value)
