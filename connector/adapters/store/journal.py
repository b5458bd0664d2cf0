"""The drain journal (``sync_journal``): every reserved ``process_id``, written before acting.

States: ``reserved`` (get answered, nothing applied) → ``applied`` (ERP commit done, in the
same transaction as the data) → ``cleared`` (the portal confirmed ``event.offline.clear``).
A restart resumes every ``reserved`` and ``applied`` entry; nothing is lost in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from connector.adapters.store.tables import sync_journal

RESERVED = "reserved"
APPLIED = "applied"
CLEARED = "cleared"


@dataclass(frozen=True)
class JournalEntry:
    process_id: str
    state: str
    record_ids: list[int]
    events: list[Any]
    flagged: list[str]


def _now() -> datetime:
    return datetime.now(UTC)


class Journal:
    def __init__(self, engine: Engine, connector_id: str, worker: str = "") -> None:
        self.engine = engine
        self.connector_id = connector_id
        self.worker = worker

    def ping(self) -> None:
        """Raise if the database does not answer (cheap: one round trip)."""
        with self.engine.connect() as conn:
            conn.execute(sa.select(1))

    def reserve(self, process_id: str, events: Sequence[Any], record_ids: Sequence[int]) -> None:
        """Write the batch before acting on it; a second call for the same pid refreshes it."""
        now = _now()
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.select(sync_journal.c.state).where(sync_journal.c.process_id == process_id)
            ).scalar_one_or_none()
            values = {"events": list(events), "record_ids": list(record_ids), "updated_at": now}
            if found is None:
                conn.execute(
                    sync_journal.insert().values(
                        process_id=process_id,
                        connector_id=self.connector_id,
                        state=RESERVED,
                        worker=self.worker,
                        created_at=now,
                        **values,
                    )
                )
            elif found == RESERVED:
                conn.execute(
                    sync_journal.update()
                    .where(sync_journal.c.process_id == process_id)
                    .values(**values)
                )

    def mark_applied(self, conn: Connection, process_id: str, flagged: Sequence[str]) -> None:
        """Inside the transaction that applied the batch to the ERP tables; ``flagged`` are
        the MESSAGE_IDs still to report with ``event.offline.error``."""
        conn.execute(
            sync_journal.update()
            .where(sync_journal.c.process_id == process_id)
            .values(state=APPLIED, flagged=list(flagged), updated_at=_now())
        )

    def mark_cleared(self, process_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sync_journal.update()
                .where(sync_journal.c.process_id == process_id)
                .values(state=CLEARED, updated_at=_now())
            )

    def unfinished(self) -> list[JournalEntry]:
        """Entries of this connector not yet cleared, oldest first."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(sync_journal)
                    .where(
                        sync_journal.c.connector_id == self.connector_id,
                        sync_journal.c.state != CLEARED,
                    )
                    .order_by(sync_journal.c.created_at)
                )
                .mappings()
                .all()
            )
        return [
            JournalEntry(
                r["process_id"],
                r["state"],
                list(r["record_ids"]),
                list(r["events"]),
                list(r["flagged"] or []),
            )
            for r in rows
        ]

    def known(self, process_ids: Sequence[str]) -> set[str]:
        if not process_ids:
            return set()
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(sync_journal.c.process_id).where(
                        sync_journal.c.process_id.in_(list(process_ids))
                    )
                ).scalars()
            )

    def prune(self, older_than: timedelta = timedelta(days=7)) -> int:
        """Forget cleared entries older than ``older_than``."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sync_journal.delete().where(
                    sync_journal.c.state == CLEARED, sync_journal.c.updated_at < _now() - older_than
                )
            )
        return result.rowcount or 0
