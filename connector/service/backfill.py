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
``finished`` and left alone until ``restart=True``. Paging stops at the highest ID
probed when the entity starts (one cheap request, which also feeds the progress bar):
anything created later reaches the ERP through the queue.

**Live events win.** The queue drainer may run while a backfill reads. The time is noted
before each window is requested; a record is skipped when a live event wrote it at or
after that read time: its ``sync_link.updated_at`` is not older, or a drain batch
applied since then names it (``sync_journal``; this covers a drain that found nothing to
change and so left the link's time alone, e.g. an edit and its undo while the window
was in flight). Skipping is always safe: the offline events are bound before any read,
so every change after the drainer's own fetch is still in the queue. MariaDB/MySQL keep
``DATETIME`` to the second, so there the read time is floored to the second first (a
tie skips, which is the safe side).

A record whose value its column cannot hold (:class:`~connector.errors.RecordError`) is
kept in ``sync_record_error`` and the window proceeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from connector.adapters.store.database import write_transaction
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.journal import APPLIED, CLEARED
from connector.adapters.store.tables import sync_cursor, sync_journal, sync_link
from connector.core.batch_commands import MAX_COMMANDS, Command, CommandOutcome
from connector.core.id_ranges import split_ranges
from connector.core.id_window import IdWindow, page_rows, row_id
from connector.core.mapping_model import EntityMapping, MappingSet
from connector.core.queue_records import plan_batch
from connector.errors import ConfigError, PortalError
from connector.service.backfill_ranges import read_ranges

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


class BindingsAnswer(Protocol):
    """What ``ensure_bindings`` returns, as far as backfill reads it."""

    @property
    def probes(self) -> Mapping[str, CommandOutcome]: ...


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


RANGES = 4
"""ID ranges read concurrently when the span is wide (enough requests in flight to keep
the bucket busy when each batch takes a second)."""
MIN_RANGE_IDS = 2500
"""No range narrower than one chained request's worth of dense IDs (50 pages x 50)."""

UNPROBED = object()
"""No start-up probe was made for the entity: :meth:`Backfiller.entity` probes itself."""


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


def _db_time(conn: Connection, value: datetime) -> datetime:
    """``value`` as the database compares it: naive UTC where the column keeps no zone."""
    if conn.dialect.name == "postgresql":
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_Fetch = tuple[datetime, "asyncio.Future[list[Mapping[str, Any]]]"]


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
        prefetch: bool = True,
        ranges: int = RANGES,
        min_range_ids: int = MIN_RANGE_IDS,
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
        self.prefetch = prefetch
        self.ranges = ranges
        self.min_range_ids = min_range_ids
        self._second_precision = engine.dialect.name in ("mysql", "mariadb")

    # --- the run -------------------------------------------------------------------------

    async def run(
        self,
        entities: Sequence[EntityMapping] | None = None,
        *,
        restart: bool = False,
        progress: BackfillProgress | None = None,
        tops: Mapping[str, int | None] | None = None,
    ) -> BackfillStats:
        """``tops``: highest IDs already probed (in the start-up batch); probed here else."""
        stats = BackfillStats()
        for mapping in entities if entities is not None else list(self.mappings):
            stats.entities[mapping.entity] = await self.entity(
                mapping,
                restart=restart,
                progress=progress,
                top=(tops or {}).get(mapping.entity, UNPROBED),
            )
        return stats

    @staticmethod
    def top_probe(mapping: EntityMapping) -> Command:
        """The highest-ID read of ``mapping``, as a command for the start-up batch."""
        return Command(
            f"top_{mapping.entity.replace('.', '_')}",
            f"{mapping.entity}.list",
            {"order": {"ID": "DESC"}, "select": ["ID"], "start": -1},
        )

    @staticmethod
    def top_from(mapping: EntityMapping, outcome: CommandOutcome) -> int | None:
        if outcome.error is not None:
            code = getattr(outcome.error, "code", None)
            log.warning("backfill %s: cannot estimate the size (%s)", mapping.entity, code)
            return None
        rows = page_rows(outcome.result)
        return row_id(rows[0]) if rows else 0

    async def entity(
        self,
        mapping: EntityMapping,
        *,
        restart: bool = False,
        progress: BackfillProgress | None = None,
        top: int | object | None = UNPROBED,
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
        if top is UNPROBED:
            top = await self._top_id(mapping)
        assert top is None or isinstance(top, int)
        if progress is not None:
            progress.entity_started(mapping.entity, after=state.last_id, top_id=top)
        if top is None or top > state.last_id:
            await self._page(mapping, state.last_id, top, stats, progress)
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

    async def _page(
        self,
        mapping: EntityMapping,
        after: int,
        top: int | None,
        stats: EntityStats,
        progress: BackfillProgress | None,
    ) -> None:
        """Read and apply window after window, from ``after`` up to ``top`` (the end when
        ``None``); a record created after the top was probed reaches us through the queue.

        With ``prefetch`` the next window is requested while this one is applied, so the
        portal's answer time and the rate governor's wait overlap the local apply. A
        prefetched window is only read, never committed, before its turn: a kill loses
        nothing but that read.
        """
        if top is not None and self.ranges > 1:
            spans = split_ranges(after, top, self.ranges, self.min_range_ids)
            if len(spans) > 1:
                await read_ranges(self, mapping, spans, stats, progress)
                return
        window = IdWindow(f"{mapping.entity}.list", {"select": mapping.portal_codes()})
        pages = self.portal.iter_pages(
            window, after=after, batched=True, pages_per_request=self.pages_per_request
        )

        def fetch() -> _Fetch:
            read_at = self.now()  # before the request: the read is at least this fresh
            return read_at, asyncio.ensure_future(anext(pages))

        pending: _Fetch | None = fetch() if top is None or after < top else None
        try:
            while pending is not None:
                read_at, task = pending
                pending = None
                try:
                    rows = await task
                except StopAsyncIteration:
                    break
                self.checkpoint("after_read")
                if self.prefetch and (top is None or row_id(rows[-1]) < top):
                    pending = fetch()
                done = await asyncio.to_thread(self._apply_window, mapping, rows, read_at)
                stats.merge(done)
                self.checkpoint("after_commit")
                if progress is not None:
                    progress.window_applied(mapping.entity, stats)
                if pending is None and not self.prefetch and (top is None or stats.last_id < top):
                    pending = fetch()
        finally:
            if pending is not None:
                pending[1].cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                    await pending[1]
            closer = getattr(pages, "aclose", None)
            if closer is not None:
                await closer()

    async def _top_id(self, mapping: EntityMapping) -> int | None:
        """The highest ID now: one cheap request (one page of IDs, no count).

        It lets the progress bar show a position, and paging stop at that ID instead of
        paying one more (49 chained, wasted) list request to find the end: anything
        created later carries a queue event, as the bindings predate this probe.
        """
        probe = self.top_probe(mapping)
        try:
            answer = await self.portal.call(probe.method, probe.params)
        except PortalError as exc:
            return self.top_from(mapping, CommandOutcome(probe.key, probe.method, error=exc))
        return self.top_from(mapping, CommandOutcome(probe.key, probe.method, answer.result))

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
        self,
        mapping: EntityMapping,
        rows: Sequence[Mapping[str, Any]],
        read_at: datetime,
        cursor_to: int | None = None,
    ) -> EntityStats:
        """Apply one window and move the cursor, all in one transaction.

        The window goes through :meth:`ErpWriter.apply_many` (a few statements per
        window); a record whose value does not convert comes back as an error outcome,
        is kept in ``sync_record_error`` and the rest of the window commits.
        """
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                return self._apply_window_once(mapping, rows, read_at, cursor_to)
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
        self,
        mapping: EntityMapping,
        rows: Sequence[Mapping[str, Any]],
        read_at: datetime,
        cursor_to: int | None = None,
    ) -> EntityStats:
        """``cursor_to``: what the cursor records (ranges read side by side: the
        contiguous prefix); the window's last ID otherwise."""
        stats = EntityStats(mapping.entity, windows=1)
        ids = [row_id(r) for r in rows]
        cutoff = self._cutoff(read_at)
        now = self.now()
        name = cursor_name(mapping.entity)
        # the write lock up front: a concurrent drainer cannot commit between the
        # link check and the writes
        with write_transaction(self.engine) as conn:
            fresh = self._fresh_links(conn, mapping.entity, ids, cutoff)
            stats.records = len(ids)
            stats.skipped = sum(1 for b24_id in ids if b24_id in fresh)
            items = [
                (b24_id, row, None)
                for b24_id, row in zip(ids, rows, strict=True)
                if b24_id not in fresh
            ]
            hooked = False

            def mid_apply() -> None:
                nonlocal hooked
                hooked = True
                self.checkpoint("mid_apply")

            outcomes = self.writer.apply_many(
                conn,
                mapping,
                items,
                now=now,
                on_progress=mid_apply if len(rows) > 1 else None,
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
                else:
                    stats.count(outcome.action)
            stats.last_id = ids[-1] if ids else 0
            exists = (
                conn.execute(
                    sa.select(sync_cursor.c.name).where(sync_cursor.c.name == name)
                ).first()
                is not None
            )
            at = stats.last_id if cursor_to is None else cursor_to
            self._write_cursor(conn, name, at, finished=False, exists=exists)
        return stats

    def _cutoff(self, read_at: datetime) -> datetime:
        cutoff = _as_utc(read_at)
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

    def _drained_since(self, conn: Connection, entity: str, cutoff: datetime) -> set[int]:
        query = sa.select(sync_journal.c.events, sync_journal.c.updated_at).where(
            sync_journal.c.updated_at >= _db_time(conn, cutoff),
            sync_journal.c.state.in_((APPLIED, CLEARED)),
        )
        drained: set[int] = set()
        for events, updated_at in conn.execute(query):
            if _as_utc(updated_at) < cutoff or not isinstance(events, list):
                continue
            drained.update(plan_batch(events, self.mappings).targets().get(entity, ()))
        return drained


async def run_backfill(
    client: PagingPortal,
    engine: Engine,
    mappings: MappingSet,
    *,
    entities: Iterable[str] | None = None,
    progress: BackfillProgress | None = None,
    restart: bool = False,
    bindings: Callable[[Sequence[Command]], Awaitable[BindingsAnswer]] | None = None,
    pages_per_request: int = MAX_COMMANDS,
    checkpoint: Checkpoint = _no_checkpoint,
) -> BackfillStats:
    """Backfill ``entities`` (names like ``crm.company`` or ``company``; all when ``None``).

    ``bindings`` runs once before the first portal read: the caller passes the step that
    ensures the offline event bindings (design invariant: bindings exist before any read
    of portal state, so no change between backfill and drain is lost). It takes the
    highest-ID probes along (``ensure_bindings(probes=…)``), so start-up is one request;
    their answers count only when no bind was needed.
    """
    chosen = resolve_entities(mappings, entities)
    tops: dict[str, int | None] = {}
    if bindings is not None:  # one start-up request: checks, bindings and the top IDs
        probes = {Backfiller.top_probe(m).key: m for m in chosen}
        answer = await bindings([Backfiller.top_probe(m) for m in chosen])
        for key, outcome in answer.probes.items():
            tops[probes[key].entity] = Backfiller.top_from(probes[key], outcome)
    backfiller = Backfiller(
        client, engine, mappings, pages_per_request=pages_per_request, checkpoint=checkpoint
    )
    return await backfiller.run(chosen, restart=restart, progress=progress, tops=tops)
