"""One backfill window applied in one transaction, and the per-entity tally.

A *window* is the rows one list request returned, ID ascending, and the span of IDs it
*covers*: ``(lo, hi]`` where ``lo`` is the ID the read started after and ``hi`` the last
row's ID (or the end of the span when the read found no more rows). Every portal record
in that span existed when the request was answered or was deleted before it, so a linked
ERP row whose ID lies in the span and is not among the rows belongs to a record deleted
in the portal: it is given to the same apply path as a delete event, under the mapping's
``delete_policy``. That is how a full backfill catches deletes no event reported (a queue
wiped by an uninstall, bindings missing for a while) at no extra request.

**Live events win.** The time is noted before each window is requested; a record is
skipped when a live event wrote it at or after that read time: its
``sync_link.updated_at`` is not older, or a drain batch applied since then names it
(``sync_journal``; this covers a drain that found nothing to change and so left the
link's time alone). Skipping is always safe: the offline events are bound before any
read, so every change after the drainer's own fetch is still in the queue. MariaDB keeps
``DATETIME`` to the second, so there the read time is floored to the second first.

**Record locks.** On PostgreSQL and MariaDB a window first takes the drainer's record
locks (:class:`~connector.adapters.store.db_locks.RecordLocks`) on every record it read,
and holds them until its commit. A drain batch naming one of them either committed
before (its journal entry is seen, the record skipped) or waits and fetches the portal's
state after the window's commit, so it applies over the older read. Without them a drain
that wrote no link (an edit and its undo while the window was in flight) could commit its
journal entry after the window looked, and the window would write the edit back. SQLite
takes its write lock up front, which orders the two the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from connector.adapters.store.cursors import write_cursor
from connector.adapters.store.database import write_transaction
from connector.adapters.store.db_locks import RecordLocks
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.journal import batches_since
from connector.adapters.store.link_sets import as_utc, links_written_since, live_links_between
from connector.adapters.store.unconfirmed_adds import without_unconfirmed_adds
from connector.core.id_window import row_id
from connector.core.mapping_model import EntityMapping, MappingSet
from connector.core.queue_records import plan_batch

__all__ = ["EntityStats", "WindowApplier"]

log = logging.getLogger(__name__)

APPLY_ATTEMPTS = 3  # a window lost to a concurrent writer's unique key is re-applied

Covers = tuple[int, int]
"""``(lo, hi]``: the IDs a window's read saw completely."""


@dataclass
class EntityStats:
    """One entity's backfill: what was read and what happened to each record."""

    entity: str
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0  # linked rows whose portal record is gone
    conflicts: int = 0
    skipped: int = 0  # a live event wrote a fresher state meanwhile
    bad: int = 0
    windows: int = 0
    started_after: int = 0
    last_id: int = 0
    finished: bool = False
    already_finished: bool = False

    COUNTED = ("inserted", "updated", "unchanged", "deleted", "conflicts", "skipped", "bad")

    def count(self, action: str) -> None:
        name = "conflicts" if action == "conflict" else action
        if name not in self.COUNTED:
            raise ValueError(f"unknown apply action {action!r}")
        setattr(self, name, getattr(self, name) + 1)

    def merge(self, window: EntityStats) -> None:
        for name in ("records", *self.COUNTED, "windows"):
            setattr(self, name, getattr(self, name) + getattr(window, name))
        self.last_id = max(self.last_id, window.last_id)


class WindowApplier:
    """Applies windows of portal rows to the ERP tables; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        mappings: MappingSet,
        *,
        now: Callable[[], datetime],
        checkpoint: Callable[[str], None],
        connector_id: str | None = None,
    ) -> None:
        self.connector_id = connector_id  # to leave our own unconfirmed adds to the push
        self.engine = engine
        self.mappings = mappings
        self.writer = ErpWriter(mappings)
        self.now = now
        self.checkpoint = checkpoint
        self._second_precision = engine.dialect.name in ("mysql", "mariadb")
        # a drainer's locks are keyed by its connector: without an id (tests, benchmarks
        # of the apply alone) no drainer shares them and the window takes none
        self.record_locks = RecordLocks(engine, connector_id) if connector_id else None

    def apply(
        self,
        mapping: EntityMapping,
        rows: Sequence[Mapping[str, Any]],
        read_at: datetime,
        *,
        covers: Covers | None = None,
        present: Collection[int] = (),
        cursor: str | None = None,
        cursor_to: int | None = None,
        gone_among: Collection[int] | None = None,
    ) -> EntityStats:
        """Apply one window (and move ``cursor`` to ``cursor_to``, else to the window's
        last ID) in one transaction; ``covers`` also deletes what the span lacks, where
        ``present`` names IDs the read found besides ``rows`` (an ID-only read) and
        ``gone_among``, when given, the only IDs that may be taken for deleted (the ones
        a read confirmed absent: :mod:`connector.service.backfill_tail`).

        A record whose value does not convert comes back as an error outcome, is kept in
        ``sync_record_error`` and the rest of the window commits.
        """
        only = None if gone_among is None else set(gone_among)
        held = None
        if self.record_locks is not None:  # held across the attempts, until the commit
            held = self.record_locks.acquire((mapping.entity, row_id(r)) for r in rows)
        try:
            for attempt in range(1, APPLY_ATTEMPTS + 1):
                try:
                    return self._apply_once(
                        mapping, rows, read_at, covers, set(present), cursor, cursor_to, only
                    )
                except IntegrityError:
                    # a concurrent drainer inserted a link first; its row is fresher and
                    # the next attempt sees it (and skips that record)
                    if attempt == APPLY_ATTEMPTS:
                        raise
                    log.info("%s: window raced a concurrent writer, applying again", mapping.entity)
        finally:
            if self.record_locks is not None:
                self.record_locks.release(held)
        raise AssertionError("unreachable")  # pragma: no cover

    def gone_candidates(self, entity: str, covers: Covers) -> list[int]:
        """Linked, live IDs inside ``covers`` (read outside any window's transaction)."""
        with self.engine.connect() as conn:
            return self._gone(conn, entity, covers, set())

    def _apply_once(
        self,
        mapping: EntityMapping,
        rows: Sequence[Mapping[str, Any]],
        read_at: datetime,
        covers: Covers | None,
        present: set[int],
        cursor: str | None,
        cursor_to: int | None,
        gone_among: set[int] | None,
    ) -> EntityStats:
        stats = EntityStats(mapping.entity, windows=1 if rows else 0)
        ids = [row_id(r) for r in rows]
        cutoff = self._cutoff(read_at)
        now = self.now()
        # A concurrent drain cannot commit between the link check and the writes: SQLite's
        # write lock is taken up front; elsewhere the record locks are held (see above).
        with write_transaction(self.engine) as conn:
            seen = present.union(ids)
            gone = self._gone(conn, mapping.entity, covers, seen) if covers else []
            if gone_among is not None:
                gone = [b24_id for b24_id in gone if b24_id in gone_among]
            fresh = self._fresh_links(conn, mapping.entity, [*ids, *gone], cutoff)
            stats.records = len(ids)
            stats.skipped = sum(1 for b24_id in ids if b24_id in fresh)
            items: list[tuple[int, Mapping[str, Any] | None, None]] = [
                (b24_id, row, None)
                for b24_id, row in zip(ids, rows, strict=True)
                if b24_id not in fresh
            ]
            items += [(b24_id, None, None) for b24_id in gone if b24_id not in fresh]
            items = without_unconfirmed_adds(conn, self.writer, mapping, self.connector_id, items)
            hooked = False

            def mid_apply() -> None:
                nonlocal hooked
                hooked = True
                self.checkpoint("mid_apply")

            outcomes = self.writer.apply_many(
                conn, mapping, items, now=now, on_progress=mid_apply if len(rows) > 1 else None
            )
            if len(rows) > 1 and not hooked:
                mid_apply()  # every record was fresh: the crash point still exists
            for (b24_id, row, _), outcome in zip(items, outcomes, strict=True):
                if outcome.error is not None:
                    log.warning("backfill: record not synced: %s", outcome.error)
                    self.writer.record_error(
                        conn, outcome.error, b24_id=b24_id, message_id=None, payload=row, now=now
                    )
                    stats.bad += 1
                elif row is None:
                    log.info(
                        "%s %d: gone from the portal, %s", mapping.entity, b24_id, outcome.action
                    )
                    stats.count("deleted" if outcome.action == "unchanged" else outcome.action)
                else:
                    stats.count(outcome.action)
            stats.last_id = ids[-1] if ids else 0
            if cursor is not None:
                at = stats.last_id if cursor_to is None else cursor_to
                write_cursor(conn, cursor, at, finished=False, now=now)
        return stats

    def _gone(self, conn: Connection, entity: str, covers: Covers, seen: set[int]) -> list[int]:
        """Linked, live IDs inside ``covers`` that the read did not return."""
        return [i for i in live_links_between(conn, entity, *covers) if i not in seen]

    def _cutoff(self, read_at: datetime) -> datetime:
        cutoff = as_utc(read_at)
        if self._second_precision:
            cutoff = cutoff.replace(microsecond=0)
        return cutoff

    def _fresh_links(
        self, conn: Connection, entity: str, ids: Sequence[int], cutoff: datetime
    ) -> set[int]:
        """IDs a live event wrote at or after ``cutoff``: their link changed then (locked
        for this window), or a drain batch applied after then named them. The second
        covers a drain that found the state equal to its base and so left the link
        alone (a change and its undo while the window was in flight)."""
        fresh = self._drained_since(conn, entity, cutoff)
        return fresh | links_written_since(conn, entity, ids, cutoff)

    def _drained_since(self, conn: Connection, entity: str, cutoff: datetime) -> set[int]:
        drained: set[int] = set()
        for events in batches_since(conn, cutoff):
            drained.update(plan_batch(events, self.mappings).targets().get(entity, ()))
        return drained
