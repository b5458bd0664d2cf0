"""Backfill: the full initial load of every mapped entity from the portal into the ERP tables.

Each entity is read with ID-window paging (digest §5): ``order[ID]=ASC``,
``filter[>ID]=<last ID>``, ``start=-1`` (no count) and ``select`` = the mapping's portal
codes, up to 50 chained pages (2,500 rows) per ``batch`` request (§4), through
:meth:`connector.adapters.rest_client.RestClient.iter_pages`.

Every window (the rows of one request) is applied in **one transaction** through
:class:`~connector.service.backfill_window.WindowApplier`, and the same transaction moves
the entity's cursor in ``sync_cursor`` (``backfill:<entity>`` = the last ID applied). A
kill at any point therefore resumes from the last committed window: nothing before the
cursor is read again, nothing after it is skipped (``adapters/store/cursors.py``). A
finished entity is left alone until ``restart=True``. Paging stops at the highest ID
probed at the start (one cheap request, also the progress bar's): anything created
later reaches the ERP through the queue.

**Deletes no event reported.** Each window also covers the span of IDs its read saw
completely, and a linked ERP row inside that span that the read did not return is a
record deleted in the portal; after the last window, links older than the highest-ID
probe and above what the reads covered are too, once a read of just their IDs confirms
them gone (:mod:`connector.service.backfill_tail`). They go through the same apply path as
a delete event, under the mapping's ``delete_policy``
(:mod:`connector.service.backfill_window`, which also holds the live-events-win rule).

A record whose value its column cannot hold (:class:`~connector.errors.RecordError`) is
kept in ``sync_record_error`` and the window proceeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from connector.adapters.store.cursors import finish_id_cursor, open_id_cursor
from connector.adapters.store.unconfirmed_adds import ORIGIN_CODES
from connector.core.batch_commands import MAX_COMMANDS, Command, CommandOutcome
from connector.core.id_ranges import split_ranges
from connector.core.id_window import IdWindow, page_rows, row_id
from connector.core.mapping_model import EntityMapping, MappingSet
from connector.errors import PortalError
from connector.service.backfill_ranges import read_ranges
from connector.service.backfill_tail import apply_tail
from connector.service.backfill_window import EntityStats, WindowApplier

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


from connector.service.backfill_types import (
    BackfillProgress,
    BackfillStats,
    BindingsAnswer,
    PagingPortal,
    resolve_entities,
)

log = logging.getLogger(__name__)

CURSOR_PREFIX = "backfill:"


Checkpoint = Callable[[str], None]
"""Called at each step (tests raise to simulate a kill): ``after_read``, ``mid_apply``
(inside the window's transaction), ``after_commit``."""


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


_Fetch = tuple[datetime, "asyncio.Future[list[Mapping[str, Any]]]"]


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
        connector_id: str | None = None,
    ) -> None:
        if not 1 <= pages_per_request <= MAX_COMMANDS:
            raise ValueError(f"pages_per_request must be 1..{MAX_COMMANDS}")
        self.portal = portal
        self.engine = engine
        self.mappings = mappings
        self.window = WindowApplier(
            engine, mappings, now=now, checkpoint=checkpoint, connector_id=connector_id
        )
        self.pages_per_request = pages_per_request
        self.checkpoint = checkpoint
        self.now = now
        self.prefetch = prefetch
        self.ranges = ranges
        self.min_range_ids = min_range_ids

    # --- the run -------------------------------------------------------------------------

    async def run(
        self,
        entities: Sequence[EntityMapping] | None = None,
        *,
        restart: bool = False,
        progress: BackfillProgress | None = None,
        tops: Mapping[str, int | None] | None = None,
        probed_at: datetime | None = None,
    ) -> BackfillStats:
        """``tops``: highest IDs already probed (in the start-up batch) after
        ``probed_at``; probed here else."""
        stats = BackfillStats()
        for mapping in entities if entities is not None else list(self.mappings):
            stats.entities[mapping.entity] = await self.entity(
                mapping,
                restart=restart,
                progress=progress,
                top=(tops or {}).get(mapping.entity, UNPROBED),
                probed_at=probed_at,
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
        probed_at: datetime | None = None,
    ) -> EntityStats:
        """Backfill one entity from its cursor (from 0 with ``restart``) to the end.

        ``top`` is the highest ID a probe found, ``probed_at`` a time before that probe;
        without both the entity is probed here."""
        name = cursor_name(mapping.entity)
        state = await asyncio.to_thread(
            open_id_cursor, self.engine, name, restart=restart, now=self.now()
        )
        stats = EntityStats(mapping.entity, started_after=state.last_id, last_id=state.last_id)
        if state.finished:
            stats.finished = stats.already_finished = True
            log.info("backfill %s: finished before (use --restart to load again)", mapping.entity)
            if progress is not None:
                progress.entity_done(mapping.entity, stats)
            return stats
        if top is UNPROBED or probed_at is None:
            probed_at = self.now()  # before the probe: links older than this predate it
            top = await self._top_id(mapping)
        assert top is None or isinstance(top, int)
        if progress is not None:
            progress.entity_started(mapping.entity, after=state.last_id, top_id=top)
        covered = state.last_id
        if top is None or top > state.last_id:
            covered = await self._page(mapping, state.last_id, top, stats, progress)
        if top is not None:
            # Past what the reads covered: a link older than the probe whose record a
            # read confirms gone is a deleted record (connector.service.backfill_tail).
            stats.merge(await apply_tail(self.portal, self.window, mapping, covered, probed_at))
        await asyncio.to_thread(finish_id_cursor, self.engine, name, stats.last_id, now=self.now())
        stats.finished = True
        log.info(
            "backfill %s: done, %d records (%d new, %d gone from the portal, "
            "%d skipped as older, %d bad)",
            mapping.entity,
            stats.records,
            stats.inserted,
            stats.deleted,
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
    ) -> int:
        """Read and apply window after window, from ``after`` up to ``top`` (the end when
        ``None``); a record created after the top was probed reaches us through the queue.
        Returns the ID up to which the reads saw every record.

        With ``prefetch`` the next window is requested while this one is applied, so the
        portal's answer time and the rate governor's wait overlap the local apply. A
        prefetched window is only read, never committed, before its turn: a kill loses
        nothing but that read.
        """
        if top is not None and self.ranges > 1:
            spans = split_ranges(after, top, self.ranges, self.min_range_ids)
            if len(spans) > 1:
                await read_ranges(self, mapping, spans, stats, progress)
                return spans[-1].hi
        window = IdWindow(
            f"{mapping.entity}.list", {"select": [*mapping.portal_codes(), *ORIGIN_CODES]}
        )
        pages = self.portal.iter_pages(
            window, after=after, batched=True, pages_per_request=self.pages_per_request
        )

        def fetch() -> _Fetch:
            read_at = self.now()  # before the request: the read is at least this fresh
            return read_at, asyncio.ensure_future(anext(pages))

        pending: _Fetch | None = fetch() if top is None or after < top else None
        covered = after
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
                span = (covered, row_id(rows[-1]))
                covered = span[1]
                done = await asyncio.to_thread(
                    self.window.apply,
                    mapping,
                    rows,
                    read_at,
                    covers=span,
                    cursor=self._cursor(mapping),
                )
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
        return covered

    @staticmethod
    def _cursor(mapping: EntityMapping) -> str:
        return cursor_name(mapping.entity)

    async def _top_id(self, mapping: EntityMapping) -> int | None:
        return await probe_top(self.portal, mapping)


async def probe_top(portal: PagingPortal, mapping: EntityMapping) -> int | None:
    """The highest ID now: one cheap request (one page of IDs, no count); ``None`` when
    the portal would not say.

    It lets the progress bar show a position, and paging stop at that ID instead of
    paying one more (49 chained, wasted) list request to find the end: anything
    created later carries a queue event, as the bindings predate this probe.
    """
    probe = Backfiller.top_probe(mapping)
    try:
        answer = await portal.call(probe.method, probe.params)
    except PortalError as exc:
        return Backfiller.top_from(mapping, CommandOutcome(probe.key, probe.method, error=exc))
    return Backfiller.top_from(mapping, CommandOutcome(probe.key, probe.method, answer.result))


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
    connector_id: str | None = None,
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
    probed_at = None
    if bindings is not None:
        probed_at = datetime.now(UTC)  # one start-up request: checks, bindings and the top IDs
        probes = {Backfiller.top_probe(m).key: m for m in chosen}
        answer = await bindings([Backfiller.top_probe(m) for m in chosen])
        for key, outcome in answer.probes.items():
            tops[probes[key].entity] = Backfiller.top_from(probes[key], outcome)
    backfiller = Backfiller(
        client,
        engine,
        mappings,
        pages_per_request=pages_per_request,
        checkpoint=checkpoint,
        connector_id=connector_id,
    )
    return await backfiller.run(
        chosen, restart=restart, progress=progress, tops=tops, probed_at=probed_at
    )
