"""The drain journal (``sync_journal``): every reserved ``process_id``, written before acting.

States: ``reserved`` (get answered, nothing applied) → ``applied`` (ERP commit done, in the
same transaction as the data) → ``cleared`` (the portal confirmed ``event.offline.clear``).
A restart resumes every ``reserved`` and ``applied`` entry; nothing is lost in between.

Entries are stamped with the worker that reserved them (``sync_worker``). A worker
resumes its own entries and those of workers whose lease has expired, never a live
peer's; taking one over is a compare-and-set on the stamp (:meth:`Journal.adopt`), so two
live workers never both adopt the same entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from connector.adapters.store.tables import sync_journal, sync_worker

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
    worker: str = ""


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
        """Entries of this connector not yet cleared that are ours to finish — our own,
        and those of workers without a live lease — oldest first."""
        live = sa.select(sync_worker.c.id).where(
            sync_worker.c.connector_id == self.connector_id,
            sync_worker.c.lease_until > _now(),
            sync_worker.c.id != self.worker,
        )
        stamp = sa.func.coalesce(sync_journal.c.worker, "")
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.select(sync_journal)
                    .where(
                        sync_journal.c.connector_id == self.connector_id,
                        sync_journal.c.state != CLEARED,
                        sa.or_(stamp == self.worker, stamp.not_in(live)),
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
                r["worker"] or "",
            )
            for r in rows
        ]

    def adopt(self, entry: JournalEntry) -> bool:
        """Stamp ``entry`` as ours if it still carries the stamp we saw (False: a peer
        adopted it first, or it moved on)."""
        if entry.worker == self.worker:
            return True
        stamp = sa.func.coalesce(sync_journal.c.worker, "")
        with self.engine.begin() as conn:
            done = conn.execute(
                sync_journal.update()
                .where(
                    sync_journal.c.process_id == entry.process_id,
                    stamp == entry.worker,
                    sync_journal.c.state == entry.state,
                )
                .values(worker=self.worker, updated_at=_now())
            )
        return bool(done.rowcount)

    def claim(self, process_id: str) -> bool:
        """Take an orphan (a process the portal holds locked and no journal row names):
        a reserved row with nothing in it yet; False when a peer claimed it first."""
        now = _now()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sync_journal.insert().values(
                        process_id=process_id,
                        connector_id=self.connector_id,
                        state=RESERVED,
                        worker=self.worker,
                        events=[],
                        record_ids=[],
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return False
        return True

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


def batches_since(conn: Connection, cutoff: datetime) -> list[list[Any]]:
    """The queue records of every batch applied or cleared at or after ``cutoff`` (of
    every connector: a backfill window asks which records a drain touched meanwhile)."""
    since = (
        cutoff if conn.dialect.name == "postgresql" else cutoff.astimezone(UTC).replace(tzinfo=None)
    )
    query = sa.select(sync_journal.c.events, sync_journal.c.updated_at).where(
        sync_journal.c.updated_at >= since,
        sync_journal.c.state.in_((APPLIED, CLEARED)),
    )
    found: list[list[Any]] = []
    for events, updated_at in conn.execute(query):
        moment = updated_at if updated_at.tzinfo else updated_at.replace(tzinfo=UTC)
        if moment >= cutoff and isinstance(events, list):
            found.append(events)
    return found
