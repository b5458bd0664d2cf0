"""Backfill: the full initial load of every mapped entity from the portal into the ERP tables.

Each entity is read with ID-window paging (digest §5): ``order[ID]=ASC``,
``filter[>ID]=<last ID>``, ``start=-1`` (no count) and ``select`` = the mapping's portal
codes, up to 50 chained pages (2,500 rows) per ``batch`` request (§4), through
:meth:`connector.adapters.rest_client.RestClient.iter_pages`.

Every window (the rows of one request) is applied in **one transaction** through
:class:`~connector.adapters.store.erp_writer.ErpWriter`, and the same transaction moves
the entity's cursor in ``sync_cursor`` (``backfill:<entity>`` = the last ID applied). A
kill at any point therefore resumes from the last committed window: nothing before the
cursor is read again, nothing after it is skipped. A finished entity is marked
``finished`` and left alone until ``restart=True``.

**Live events win.** The queue drainer may run while a backfill reads. The time is noted
before each window is requested; a record whose ``sync_link.updated_at`` is not older
than that read time was written by someone (the drainer) from a state at least as fresh,
so the backfill's copy is skipped. Skipping is always safe: the offline events are bound
before any read, so every change after the drainer's own fetch is still in the queue.
MariaDB/MySQL keep ``DATETIME`` to the second, so there the read time is floored to the
second first (a tie skips, which is the safe side).

A record whose value its column cannot hold (:class:`~connector.errors.RecordError`) is
kept in ``sync_record_error`` and the window proceeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.tables import sync_cursor, sync_link
from connector.core.batch_commands import MAX_COMMANDS
from connector.core.id_window import IdWindow, page_rows, row_id
from connector.core.mapping_model import EntityMapping, MappingSet
from connector.errors import ConfigError, PortalError, RecordError

__all__ = [
    "BackfillProgress",
    "BackfillStats",
    "Backfiller",
    "EntityStats",
    "PagingPortal",
    "cursor_name",
    "resolve_entities",
    "run_backfill",
]

log = logging.getLogger(__name__)

CURSOR_PREFIX = "backfill:"
LINK_CHUNK = 500  # IDs per IN (...) when reading links; far below every backend's limit
APPLY_ATTEMPTS = 3  # a window lost to a concurrent writer's unique key is re-applied


class Answerish(Protocol):
    @property
    def result(self) -> Any: ...


class PagingPortal(Protocol):
    """What the backfill needs from the REST client (``RestClient``)."""

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Answerish: ...

    def iter_pages(
        self,
        window: IdWindow,
        *,
        after: int = 0,
        batched: bool = True,
        pages_per_request: int = MAX_COMMANDS,
    ) -> AsyncIterator[list[Mapping[str, Any]]]: ...


@dataclass
class EntityStats:
    """One entity's backfill: what was read and what happened to each record."""

    entity: str
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: int = 0
    skipped: int = 0  # a live event wrote a fresher state meanwhile
    bad: int = 0
    windows: int = 0
    started_after: int = 0
    last_id: int = 0
    finished: bool = False
    already_finished: bool = False

    def count(self, action: str) -> None:
        name = "conflicts" if action == "conflict" else action
        if name in ("inserted", "updated", "unchanged", "conflicts", "skipped", "bad"):
            setattr(self, name, getattr(self, name) + 1)
        else:  # "deleted" cannot come from a read; keep the total honest anyway
            self.updated += 1

    def merge(self, window: EntityStats) -> None:
        for name in (
            "records",
            "inserted",
            "updated",
            "unchanged",
            "conflicts",
            "skipped",
            "bad",
            "windows",
        ):
            setattr(self, name, getattr(self, name) + getattr(window, name))
        self.last_id = max(self.last_id, window.last_id)


@dataclass
class BackfillStats:
    """The whole run, per entity and in total."""

    entities: dict[str, EntityStats] = field(default_factory=dict)

    def total(self, name: str) -> int:
        return sum(int(getattr(s, name)) for s in self.entities.values())

    @property
    def records(self) -> int:
        return self.total("records")

    def as_dict(self) -> dict[str, Any]:
        return {
            e: {f.name: getattr(s, f.name) for f in fields(s)} for e, s in self.entities.items()
        }


class BackfillProgress(Protocol):
    """Where progress goes (a rich bar on a TTY, log lines otherwise, nothing in tests)."""

    def entity_started(self, entity: str, *, after: int, top_id: int | None) -> None: ...

    def window_applied(self, entity: str, stats: EntityStats) -> None: ...

    def entity_done(self, entity: str, stats: EntityStats) -> None: ...


Checkpoint = Callable[[str], None]
"""Called with each step's name; tests raise from it to simulate a kill there:
``after_read`` (window fetched, nothing applied), ``mid_apply`` (inside the window's
transaction, after its first record), ``after_commit`` (window and cursor committed)."""


def _no_checkpoint(_: str) -> None:
    return None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def cursor_name(entity: str) -> str:
    return f"{CURSOR_PREFIX}{entity}"


def resolve_entities(mappings: MappingSet, names: Iterable[str] | None) -> list[EntityMapping]:
    """The mappings to backfill: all (``None``/empty) or the named ones, in mapping order.

    ``crm.company`` and ``company`` both name the company mapping; an unknown name is a
    :class:`~connector.errors.ConfigError` listing the mapped entities.
    """
    wanted = [n.strip() for n in (names or ()) if n.strip()]
    if not wanted:
        return list(mappings)
    chosen: list[str] = []
    for name in wanted:
        key = name.lower()
        if not key.startswith("crm."):
            key = f"crm.{key}"
        if key not in mappings.entities:
            known = ", ".join(mappings.entities) or "none"
            raise ConfigError(f"--entity {name}: not a mapped entity (mapped: {known})")
        if key not in chosen:
            chosen.append(key)
    return [m for m in mappings if m.entity in chosen]


def _begin_immediately(conn: Connection) -> None:
    """Make the window one real transaction on SQLite, holding the write lock.

    pysqlite (Python 3.11) sends no ``BEGIN`` before the first write, and a ``SAVEPOINT``
    outside a transaction commits on ``RELEASE``: each record's savepoint would commit on
    its own. ``BEGIN IMMEDIATE`` opens the transaction and takes the write lock at once,
    so a concurrent drainer cannot commit between the link check and the writes.
    """
    if conn.dialect.name != "sqlite":
        return
    dbapi = conn.connection.dbapi_connection
    if dbapi is not None and not getattr(dbapi, "in_transaction", True):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class _CursorState:
    last_id: int
    finished: bool


class Backfiller:
    """Loads mapped entities from the portal; see the module docstring."""

    def __init__(
        self,
        portal: PagingPortal,
        engine: Engine,
        mappings: MappingSet,
        *,
        pages_per_request: int = MAX_COMMANDS,
        checkpoint: Checkpoint = _no_checkpoint,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not 1 <= pages_per_request <= MAX_COMMANDS:
            raise ValueError(f"pages_per_request must be 1..{MAX_COMMANDS}")
        self.portal = portal
        self.engine = engine
        self.mappings = mappings
        self.writer = ErpWriter(mappings)
        self.pages_per_request = pages_per_request
        self.checkpoint = checkpoint
        self.now = now
        self._second_precision = engine.dialect.name in ("mysql", "mariadb")

    # --- the run -------------------------------------------------------------------------

    async def run(
        self,
        entities: Sequence[EntityMapping] | None = None,
        *,
        restart: bool = False,
        progress: BackfillProgress | None = None,
    ) -> BackfillStats:
        stats = BackfillStats()
        for mapping in entities if entities is not None else list(self.mappings):
            stats.entities[mapping.entity] = await self.entity(
                mapping, restart=restart, progress=progress
            )
        return stats

    async def entity(
        self,
        mapping: EntityMapping,
        *,
        restart: bool = False,
        progress: BackfillProgress | None = None,
    ) -> EntityStats:
        """Backfill one entity from its cursor (from 0 with ``restart``) to the end."""
        name = cursor_name(mapping.entity)
        state = await asyncio.to_thread(self._open_cursor, name, restart)
        stats = EntityStats(mapping.entity, started_after=state.last_id, last_id=state.last_id)
        if state.finished:
            stats.finished = stats.already_finished = True
            log.info("backfill %s: finished before (use --restart to load again)", mapping.entity)
            if progress is not None:
                progress.entity_done(mapping.entity, stats)
            return stats
        if progress is not None:
            top = await self._top_id(mapping)
            progress.entity_started(mapping.entity, after=state.last_id, top_id=top)
        window = IdWindow(f"{mapping.entity}.list", {"select": mapping.portal_codes()})
        pages = self.portal.iter_pages(
            window, after=state.last_id, batched=True, pages_per_request=self.pages_per_request
        )
        try:
            while True:
                read_at = self.now()  # before the request: the read is at least this fresh
                try:
                    rows = await anext(pages)
                except StopAsyncIteration:
                    break
                self.checkpoint("after_read")
                done = await asyncio.to_thread(self._apply_window, mapping, rows, read_at)
                stats.merge(done)
                self.checkpoint("after_commit")
                if progress is not None:
                    progress.window_applied(mapping.entity, stats)
        finally:
            closer = getattr(pages, "aclose", None)
            if closer is not None:
                await closer()
        await asyncio.to_thread(self._finish_cursor, name, stats.last_id)
        stats.finished = True
        log.info(
            "backfill %s: done, %d records (%d new, %d skipped as older, %d bad)",
            mapping.entity,
            stats.records,
            stats.inserted,
            stats.skipped,
            stats.bad,
        )
        if progress is not None:
            progress.entity_done(mapping.entity, stats)
        return stats

    async def _top_id(self, mapping: EntityMapping) -> int | None:
        """The highest ID now (one cheap request, for the progress display only)."""
        try:
            answer = await self.portal.call(
                f"{mapping.entity}.list", {"order": {"ID": "DESC"}, "select": ["ID"], "start": -1}
            )
            rows = page_rows(answer.result)
            return row_id(rows[0]) if rows else 0
        except PortalError as exc:
            log.warning("backfill %s: cannot estimate the size (%s)", mapping.entity, exc.code)
            return None

    # --- the cursor -----------------------------------------------------------------------

    def _open_cursor(self, name: str, restart: bool) -> _CursorState:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(sync_cursor.c.value, sync_cursor.c.finished).where(
                    sync_cursor.c.name == name
                )
            ).first()
            if restart:
                self._write_cursor(conn, name, 0, finished=False, exists=row is not None)
                return _CursorState(0, False)
        if row is None:
            return _CursorState(0, False)
        try:
            last = int(row[0] or 0)
        except ValueError:
            raise ConfigError(
                f"sync_cursor {name} holds {row[0]!r}, not an ID; run backfill --restart"
            ) from None
        return _CursorState(last, bool(row[1]))

    def _finish_cursor(self, name: str, last_id: int) -> None:
        with self.engine.begin() as conn:
            exists = (
                conn.execute(
                    sa.select(sync_cursor.c.name).where(sync_cursor.c.name == name)
                ).first()
                is not None
            )
            self._write_cursor(conn, name, last_id, finished=True, exists=exists)

    def _write_cursor(
        self, conn: Connection, name: str, last_id: int, *, finished: bool, exists: bool
    ) -> None:
        values = {"value": str(last_id), "finished": finished, "updated_at": self.now()}
        if exists:
            conn.execute(sync_cursor.update().where(sync_cursor.c.name == name).values(**values))
        else:
            conn.execute(sync_cursor.insert().values(name=name, **values))

    # --- one window ---------------------------------------------------------------------

    def _apply_window(
        self, mapping: EntityMapping, rows: Sequence[Mapping[str, Any]], read_at: datetime
    ) -> EntityStats:
        """Apply one window and move the cursor, all in one transaction."""
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                return self._apply_window_once(mapping, rows, read_at)
            except sa.exc.IntegrityError:
                # a concurrent drainer inserted a link first; its row is fresher and the
                # next attempt sees it (and skips that record)
                if attempt == APPLY_ATTEMPTS:
                    raise
                log.info(
                    "backfill %s: window raced a concurrent writer, applying again", mapping.entity
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply_window_once(
        self, mapping: EntityMapping, rows: Sequence[Mapping[str, Any]], read_at: datetime
    ) -> EntityStats:
        stats = EntityStats(mapping.entity, windows=1)
        ids = [row_id(r) for r in rows]
        cutoff = self._cutoff(read_at)
        now = self.now()
        name = cursor_name(mapping.entity)
        with self.engine.begin() as conn:
            _begin_immediately(conn)
            fresh = self._fresh_links(conn, mapping.entity, ids, cutoff)
            for index, (b24_id, row) in enumerate(zip(ids, rows, strict=True)):
                if index == 1:
                    self.checkpoint("mid_apply")
                stats.records += 1
                if b24_id in fresh:
                    stats.skipped += 1
                    continue
                try:
                    with conn.begin_nested():
                        outcome = self.writer.apply(
                            conn, mapping, b24_id, row, message_id=None, now=now
                        )
                except RecordError as err:
                    log.warning("backfill: record not synced: %s", err)
                    self.writer.record_error(
                        conn, err, b24_id=b24_id, message_id=None, payload=row, now=now
                    )
                    stats.bad += 1
                    continue
                stats.count(outcome.action)
            stats.last_id = ids[-1] if ids else 0
            exists = (
                conn.execute(
                    sa.select(sync_cursor.c.name).where(sync_cursor.c.name == name)
                ).first()
                is not None
            )
            self._write_cursor(conn, name, stats.last_id, finished=False, exists=exists)
        return stats

    def _cutoff(self, read_at: datetime) -> datetime:
        cutoff = _as_utc(read_at)
        if self._second_precision:
            cutoff = cutoff.replace(microsecond=0)
        return cutoff

    def _fresh_links(
        self, conn: Connection, entity: str, ids: Sequence[int], cutoff: datetime
    ) -> set[int]:
        """IDs whose link was written at or after ``cutoff`` (locked for this window)."""
        fresh: set[int] = set()
        for start in range(0, len(ids), LINK_CHUNK):
            chunk = ids[start : start + LINK_CHUNK]
            query = (
                sa.select(sync_link.c.b24_id, sync_link.c.updated_at)
                .where(sync_link.c.entity == entity, sync_link.c.b24_id.in_(chunk))
                .with_for_update()
            )
            for b24_id, updated_at in conn.execute(query):
                if updated_at is not None and _as_utc(updated_at) >= cutoff:
                    fresh.add(int(b24_id))
        return fresh


async def run_backfill(
    client: PagingPortal,
    engine: Engine,
    mappings: MappingSet,
    *,
    entities: Iterable[str] | None = None,
    progress: BackfillProgress | None = None,
    restart: bool = False,
    before_read: Callable[[], Awaitable[object]] | None = None,
    pages_per_request: int = MAX_COMMANDS,
    checkpoint: Checkpoint = _no_checkpoint,
) -> BackfillStats:
    """Backfill ``entities`` (names like ``crm.company`` or ``company``; all when ``None``).

    ``before_read`` runs once before the first portal read: the caller passes the step
    that ensures the offline event bindings (design invariant: bindings exist before any
    read of portal state, so no change between backfill and drain is lost).
    """
    chosen = resolve_entities(mappings, entities)
    if before_read is not None:
        await before_read()
    backfiller = Backfiller(
        client, engine, mappings, pages_per_request=pages_per_request, checkpoint=checkpoint
    )
    return await backfiller.run(chosen, restart=restart, progress=progress)
