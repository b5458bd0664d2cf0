"""The outbox (``sync_outbox``): ERP edits captured by the triggers, claimed by the pusher.

A row is ``pending`` until the pusher has seen it through: ``done`` (pushed, or nothing to
push), ``failed`` (the portal refused the write: ``error_code`` and ``last_error`` say why;
``outbox retry`` makes it pending again) or ``held`` (the record has an open conflict).

Claims are leases: the claiming transaction stamps ``locked_by`` (``host:pid:token``),
``locked_at`` and bumps ``attempts``, and commits before any REST call. A lease is taken
over when it is older than ``lease`` seconds, when its holder is a registered worker
whose heartbeat lease expired (``sync_worker``), or at once when its holder was a process
on this host that no longer exists (a ``kill -9``). On PostgreSQL and MariaDB the claim reads
with ``FOR UPDATE SKIP LOCKED``, so concurrent pushers never claim the same rows; on
SQLite the claim runs under the write lock (``BEGIN IMMEDIATE``).

All pending rows of one record are claimed together and pushed as one write; a row whose
``attempts`` was already above zero tells the pusher an earlier try may have reached the
portal (it then looks an add up by ``ORIGIN_ID`` before adding again).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from connector.adapters.store.database import write_transaction
from connector.adapters.store.local_process import host_identity, process_gone
from connector.adapters.store.outbox_views import DONE, FAILED, HELD, PENDING, OutboxViews
from connector.adapters.store.tables import sync_outbox, sync_worker

__all__ = ["DONE", "FAILED", "HELD", "PENDING", "OutboxStore", "PendingRecord", "worker_id"]


def worker_id() -> str:
    """``host:pid:token``: who holds a claim, and whether that process is still alive."""
    return f"{host_identity()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != host_identity() or not pid_text.isdigit():
        return False
    return process_gone(int(pid_text))


@dataclass(frozen=True)
class PendingRecord:
    """All claimed outbox rows of one ERP record."""

    entity: str
    erp_key: str
    row_ids: tuple[int, ...]
    ops: frozenset[str]
    retried: bool  # an earlier claim of one of these rows may have reached the portal
    sent: dict[str, Any] | None = None  # what that earlier claim was about to send


def _now() -> datetime:
    return datetime.now(UTC)


class OutboxStore(OutboxViews):
    def __init__(self, engine: Engine, worker: str | None = None, *, lease: float = 300.0) -> None:
        self.engine = engine
        self.worker = worker or worker_id()
        self.lease = lease

    # --- the pusher's side -----------------------------------------------------------------

    def release_dead(self) -> int:
        """Free the claims of processes on this host that are gone; how many rows."""
        with self.engine.connect() as conn:
            holders = conn.execute(
                sa.select(sync_outbox.c.locked_by)
                .where(sync_outbox.c.status == PENDING, sync_outbox.c.locked_by.is_not(None))
                .distinct()
            ).scalars()
            dead = [h for h in holders if h != self.worker and _holder_is_dead(h)]
        if not dead:
            return 0
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                sync_outbox.update()
                .where(sync_outbox.c.status == PENDING, sync_outbox.c.locked_by.in_(dead))
                .values(locked_by=None, locked_at=None)
            )
            return int(result.rowcount or 0)

    def claim(self, max_records: int) -> list[PendingRecord]:
        """Claim the oldest pending records (every pending row of each), oldest first."""
        now = _now()
        stale = now - timedelta(seconds=self.lease)
        with self.engine.connect() as conn:  # read apart: the claim below locks outbox rows only
            expired = list(
                conn.execute(
                    sa.select(sync_worker.c.id).where(sync_worker.c.lease_until <= now)
                ).scalars()
            )
        free = sa.or_(
            sync_outbox.c.locked_by.is_(None),
            sync_outbox.c.locked_by == self.worker,
            sync_outbox.c.locked_at < stale,
            sync_outbox.c.locked_by.in_(expired),  # a registered worker whose lease ran out
        )
        with write_transaction(self.engine) as conn:
            locking = conn.dialect.name != "sqlite"
            busy = {
                (r[0], r[1])
                for r in conn.execute(
                    sa.select(sync_outbox.c.entity, sync_outbox.c.erp_key)
                    .where(sync_outbox.c.status == PENDING, sa.not_(free))
                    .distinct()
                ).all()
            }
            query = (
                sa.select(
                    sync_outbox.c.id,
                    sync_outbox.c.entity,
                    sync_outbox.c.erp_key,
                    sync_outbox.c.op,
                    sync_outbox.c.attempts,
                    sync_outbox.c.sent,
                )
                .where(sync_outbox.c.status == PENDING, free)
                .order_by(sync_outbox.c.id)
                .limit(max_records * 4)
            )
            if locking:
                query = query.with_for_update(skip_locked=True)
            rows = list(conn.execute(query).all())
            order: list[tuple[str, str]] = []
            for r in rows:
                key = (r[1], r[2])
                if key not in busy and key not in order and len(order) < max_records:
                    order.append(key)
            if not order:
                return []
            wanted = set(order)
            # Rows of the chosen records past the first read's limit belong to them too.
            by_entity: dict[str, list[str]] = {}
            for entity, erp_key in order:
                by_entity.setdefault(entity, []).append(erp_key)
            for entity, keys in by_entity.items():
                for part in _chunks(keys, 500):
                    more = (
                        sa.select(
                            sync_outbox.c.id,
                            sync_outbox.c.entity,
                            sync_outbox.c.erp_key,
                            sync_outbox.c.op,
                            sync_outbox.c.attempts,
                            sync_outbox.c.sent,
                        )
                        .where(
                            sync_outbox.c.status == PENDING,
                            free,
                            sync_outbox.c.entity == entity,
                            sync_outbox.c.erp_key.in_(part),
                        )
                        .order_by(sync_outbox.c.id)
                    )
                    if locking:
                        more = more.with_for_update(skip_locked=True)
                    rows += list(conn.execute(more).all())
            grouped: dict[tuple[str, str], dict[int, Any]] = {k: {} for k in order}
            for r in rows:
                key = (r[1], r[2])
                if key in wanted:
                    grouped[key][int(r[0])] = r
            ids = [i for g in grouped.values() for i in g]
            for part in _chunks(ids, 500):
                conn.execute(
                    sync_outbox.update()
                    .where(sync_outbox.c.id.in_(part))
                    .values(
                        locked_by=self.worker,
                        locked_at=now,
                        attempts=sync_outbox.c.attempts + 1,
                    )
                )
        return [
            PendingRecord(
                entity=entity,
                erp_key=key,
                row_ids=tuple(sorted(g)),
                ops=frozenset(str(r[3]) for r in g.values()),
                retried=any(int(r[4] or 0) > 0 for r in g.values()),
                sent=_merged_intents(g[i][5] for i in sorted(g)),
            )
            for (entity, key), g in grouped.items()
        ]

    def record_intents(self, intents: Sequence[tuple[Sequence[int], dict[str, Any]]]) -> None:
        """Before a write batch goes out: what it sends, on the rows it answers for.

        After a crash between the portal's answer and our commit, the next claim reads it
        back: a portal value equal to what we sent is our own write, not a portal edit.
        """
        if not intents:
            return
        with write_transaction(self.engine) as conn:
            for row_ids, sent in intents:
                conn.execute(
                    sync_outbox.update()
                    .where(sync_outbox.c.id.in_(list(row_ids)))
                    .values(sent=sent)
                )

    def release(self, row_ids: Iterable[int]) -> None:
        """Give claimed rows back (pending, unlocked) after a failure worth retrying."""
        ids = list(row_ids)
        if not ids:
            return
        with write_transaction(self.engine) as conn:
            for part in _chunks(ids, 500):
                conn.execute(
                    sync_outbox.update()
                    .where(sync_outbox.c.id.in_(part), sync_outbox.c.status == PENDING)
                    .values(locked_by=None, locked_at=None)
                )

    @staticmethod
    def finish(
        conn: Connection,
        row_ids: Sequence[int],
        status: str,
        *,
        note: str | None = None,
        code: str | None = None,
        error: str | None = None,
    ) -> None:
        """Close claimed rows inside the caller's transaction (the one with the write-back)."""
        now = _now()
        values: dict[str, Any] = {
            "status": status,
            "locked_by": None,
            "locked_at": None,
            "note": note,
            "error_code": code,
            "last_error": error,
            "done_at": now if status == DONE else None,
        }
        for part in _chunks(list(row_ids), 500):
            conn.execute(sync_outbox.update().where(sync_outbox.c.id.in_(part)).values(**values))

    @staticmethod
    def supersede_failed(conn: Connection, entity: str, erp_key: str, note: str) -> None:
        """A later push of the record went through: its older refusals are history."""
        conn.execute(
            sync_outbox.update()
            .where(
                sync_outbox.c.entity == entity,
                sync_outbox.c.erp_key == erp_key,
                sync_outbox.c.status == FAILED,
            )
            .values(status=DONE, done_at=_now(), note=note)
        )

    @staticmethod
    def ensure_pending(conn: Connection, entity: str, changed: dict[str, list[str]]) -> int:
        """ERP values the merge found unsent (``{erp_key: fields}``): make sure each record
        has a pending row, so no ERP edit waits for a trigger that never fired."""
        if not changed:
            return 0
        have = set(
            conn.execute(
                sa.select(sync_outbox.c.erp_key).where(
                    sync_outbox.c.entity == entity,
                    sync_outbox.c.status.in_([PENDING, HELD]),
                    sync_outbox.c.erp_key.in_(list(changed)),
                )
            ).scalars()
        )
        missing = [k for k in changed if k not in have]
        for key in missing:
            OutboxStore.enqueue(conn, entity, key, changed[key])
        return len(missing)

    @staticmethod
    def enqueue(conn: Connection, entity: str, erp_key: str, changed: Sequence[str]) -> None:
        """Add a pending row from the connector itself (an ERP value no trigger captured)."""
        conn.execute(
            sync_outbox.insert().values(
                entity=entity,
                erp_key=erp_key,
                op="update",
                changed=list(changed),
                created_at=_now(),
                status=PENDING,
            )
        )

    # --- the operator's side -----------------------------------------------------------

    def retry(self, row_id: int | None) -> int:
        """Make failed rows pending again (one id, or all of them with ``None``)."""
        where = [sync_outbox.c.status == FAILED]
        if row_id is not None:
            where.append(sync_outbox.c.id == row_id)
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                sync_outbox.update()
                .where(*where)
                .values(status=PENDING, locked_by=None, locked_at=None)
            )
            return int(result.rowcount or 0)


def _merged_intents(values: Iterable[Any]) -> dict[str, Any] | None:
    merged: dict[str, Any] = {}
    for value in values:
        if isinstance(value, str):  # a driver that hands JSON back as text
            import json

            value = json.loads(value)
        if isinstance(value, dict):
            merged.update(value)
    return merged or None


def _chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
