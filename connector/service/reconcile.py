"""Reconcile: compare the portal's ID set with the ERP's links, and mend the difference.

A queue event can be lost for good: the app uninstalled and reinstalled (the queue goes
with it), bindings missing for a while. Backfill catches that by reading every field;
``reconcile`` does it cheaply:

1. **ID pass.** ``crm.<entity>.list`` with ``select[]=ID`` and ID-window paging, 50
   chained pages per ``batch`` (2,500 IDs per request). Each window covers the IDs its
   read saw completely (:mod:`connector.service.backfill_window`): a live link in that
   span whose ID the read did not return is a record deleted in the portal and goes
   through the delete path under the mapping's ``delete_policy``; links older than the
   highest-ID probe and above what the reads covered, too, once a read of just their
   IDs confirms them gone (:mod:`connector.service.backfill_tail`).
2. **Missing records.** IDs the portal has and no live link names are read in full
   (``filter[@ID]``, 50 per page, 50 pages per request) and applied like backfill rows.
3. **Changed records** (``since``): records whose ``DATE_MODIFY`` is at or after
   ``since`` are read in full and applied. An ID set cannot show an update; the worker
   passes the time it last saw the bindings in place.

Every apply is a :class:`~connector.service.backfill_window.WindowApplier` window, so a
live event drained meanwhile wins over the older read, exactly as in backfill.

The worker schedules a reconcile when it finds bindings missing at start-up for an entity
it synced before (:func:`note_bindings`): the entity and the gap's start are kept in
``sync_cursor`` (``reconcile:<entity>``), so a kill during the reconcile resumes it at
the next start-up (:func:`run_pending`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine

from connector.adapters.store.cursors import cursors_named, finish_cursor, write_cursor
from connector.adapters.store.link_sets import ever_linked, unlinked
from connector.adapters.store.unconfirmed_adds import ORIGIN_CODES
from connector.core.batch_commands import MAX_COMMANDS, Command, CommandOutcome
from connector.core.id_window import PAGE_SIZE, IdWindow, page_rows, row_id
from connector.core.mapping_model import EntityMapping, MappingSet
from connector.service.backfill import PagingPortal, probe_top
from connector.service.backfill_tail import apply_tail
from connector.service.backfill_window import EntityStats, WindowApplier

__all__ = [
    "ReconcileStats",
    "Reconciler",
    "earliest",
    "note_bindings",
    "pending",
    "run_pending",
]

log = logging.getLogger(__name__)

RECONCILE_PREFIX = "reconcile:"
BINDINGS_PREFIX = "bindings:"
GAP_MARGIN = timedelta(minutes=10)
"""Read changes from this long before the bindings were last seen (clock skew between
the portal and the database host; re-reading a record is harmless)."""


class ReconcilePortal(PagingPortal, Protocol):
    """What reconcile needs from the REST client (``RestClient``): backfill's calls and
    ID-window pages, and batches."""

    async def batch(
        self, commands: Sequence[Command], *, halt: bool = False
    ) -> dict[str, CommandOutcome]: ...


@dataclass
class ReconcileStats:
    """One entity's reconcile."""

    entity: str
    compared: int = 0  # portal IDs read in the ID pass
    missing: int = 0  # portal records no live link named: read in full
    changed: int = 0  # records modified since ``since``: read in full
    since: datetime | None = None
    applied: EntityStats = field(default_factory=lambda: EntityStats(""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "compared": self.compared,
            "gone": self.applied.deleted,
            "missing": self.missing,
            "changed": self.changed,
            "since": self.since.isoformat() if self.since else None,
            "inserted": self.applied.inserted,
            "updated": self.applied.updated,
            "conflicts": self.applied.conflicts,
            "bad": self.applied.bad,
        }


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _no_checkpoint(_: str) -> None:
    return None


class Reconciler:
    """Compares and mends one entity at a time; see the module docstring."""

    def __init__(
        self,
        portal: ReconcilePortal,
        engine: Engine,
        mappings: MappingSet,
        *,
        now: Callable[[], datetime] = _utc_now,
        pages_per_request: int = MAX_COMMANDS,
        checkpoint: Callable[[str], None] = _no_checkpoint,
        connector_id: str | None = None,
    ) -> None:
        self.portal = portal
        self.engine = engine
        self.mappings = mappings
        self.now = now
        self.pages_per_request = pages_per_request
        self.window = WindowApplier(
            engine, mappings, now=now, checkpoint=checkpoint, connector_id=connector_id
        )

    async def entity(
        self, mapping: EntityMapping, *, since: datetime | None = None
    ) -> ReconcileStats:
        stats = ReconcileStats(mapping.entity, since=since, applied=EntityStats(mapping.entity))
        probed_at = self.now()
        top = await probe_top(self.portal, mapping)
        missing = await self._id_pass(mapping, top, probed_at, stats)
        stats.missing = len(missing)
        for start in range(0, len(missing), PAGE_SIZE * self.pages_per_request):
            await self._load(
                mapping, missing[start : start + PAGE_SIZE * self.pages_per_request], stats
            )
        if since is not None:
            await self._changed_since(mapping, since, stats)
        await asyncio.to_thread(self._finish, mapping.entity)
        log.info(
            "reconcile %s: %d portal IDs compared, %d gone from the portal, %d missing in the "
            "ERP, %d changed since %s",
            mapping.entity,
            stats.compared,
            stats.applied.deleted,
            stats.missing,
            stats.changed,
            since.isoformat() if since else "-",
        )
        return stats

    async def _id_pass(
        self, mapping: EntityMapping, top: int | None, probed_at: datetime, stats: ReconcileStats
    ) -> list[int]:
        """Mark what is gone window by window; return the IDs no live link names."""
        window = IdWindow(f"{mapping.entity}.list", {"select": ["ID"]})
        pages = self.portal.iter_pages(
            window, batched=True, pages_per_request=self.pages_per_request
        )
        covered = 0
        missing: list[int] = []
        try:
            while top is None or covered < top:
                read_at = self.now()
                try:
                    rows = await anext(pages)
                except StopAsyncIteration:
                    break
                ids = [row_id(r) for r in rows]
                stats.compared += len(ids)
                span = (covered, ids[-1])
                covered = ids[-1]
                done = await asyncio.to_thread(
                    self.window.apply, mapping, [], read_at, covers=span, present=ids
                )
                stats.applied.merge(done)
                missing += await asyncio.to_thread(unlinked, self.engine, mapping.entity, ids)
        finally:
            closer = getattr(pages, "aclose", None)
            if closer is not None:
                await closer()
        if top is not None:
            stats.applied.merge(
                await apply_tail(self.portal, self.window, mapping, covered, probed_at)
            )
        return missing

    async def _load(
        self, mapping: EntityMapping, ids: Sequence[int], stats: ReconcileStats
    ) -> None:
        """Read ``ids`` in full (one request for up to 2,500) and apply them."""
        commands = [
            Command(
                f"m{n}",
                f"{mapping.entity}.list",
                {
                    "filter": {"@ID": list(ids[start : start + PAGE_SIZE])},
                    "select": [*mapping.portal_codes(), *ORIGIN_CODES],
                    "order": {"ID": "ASC"},
                    "start": -1,
                },
            )
            for n, start in enumerate(range(0, len(ids), PAGE_SIZE))
        ]
        read_at = self.now()
        outcomes = await self.portal.batch(commands)
        rows: list[Mapping[str, Any]] = []
        for command in commands:
            outcome = outcomes[command.key]
            if outcome.error is not None:
                raise outcome.error
            rows += page_rows(outcome.result)
        rows.sort(key=row_id)
        if rows:
            done = await asyncio.to_thread(self.window.apply, mapping, rows, read_at)
            stats.applied.merge(done)

    async def _changed_since(
        self, mapping: EntityMapping, since: datetime, stats: ReconcileStats
    ) -> None:
        window = IdWindow(
            f"{mapping.entity}.list",
            {
                "select": [*mapping.portal_codes(), *ORIGIN_CODES],
                "filter": {">=DATE_MODIFY": since.isoformat()},
            },
        )
        read_at = self.now()
        async for rows in self.portal.iter_pages(
            window, batched=True, pages_per_request=self.pages_per_request
        ):
            stats.changed += len(rows)
            done = await asyncio.to_thread(self.window.apply, mapping, rows, read_at)
            stats.applied.merge(done)
            read_at = self.now()

    def _finish(self, entity: str) -> None:
        finish_cursor(self.engine, f"{RECONCILE_PREFIX}{entity}", now=self.now())


# --- scheduling: bindings found missing at start-up ------------------------------------------


def note_bindings(
    engine: Engine, mappings: MappingSet, bound: Sequence[str], *, now: datetime | None = None
) -> list[str]:
    """After a start-up bindings check: remember when each entity's bindings were seen in
    place, and schedule a reconcile for every entity synced before whose events had to
    be bound again (their queue events in between are lost). Returns those entities."""
    at = now or _utc_now()
    seen = cursors_named(engine, BINDINGS_PREFIX)
    owed = pending(engine)  # a reconcile still owed keeps its earlier start
    bound_now = {e.upper() for e in bound}
    gaps: dict[str, list[str]] = {}
    for mapping in mappings:
        rebound = sorted(set(mapping.event_names()) & bound_now)
        if rebound and ever_linked(engine, mapping.entity):
            gaps[mapping.entity] = rebound
    scheduled: list[str] = []
    with engine.begin() as conn:
        for mapping in mappings:
            if mapping.entity in gaps:
                last = seen.get(mapping.entity, (None, False))[0]
                since = (datetime.fromisoformat(last) - GAP_MARGIN) if last else None
                if mapping.entity in owed:
                    since = earliest(since, owed[mapping.entity])
                log.error(
                    "%s: the offline bindings %s were missing (the app reinstalled, or its "
                    "access expired) and are bound again; changes made meanwhile never reached "
                    "the queue: reconciling %s",
                    mapping.entity,
                    ", ".join(gaps[mapping.entity]),
                    f"IDs and records changed since {since.isoformat()}"
                    if since
                    else "IDs only (no record of when the bindings were last seen: run "
                    "`backfill --restart` to re-read every field)",
                )
                name = f"{RECONCILE_PREFIX}{mapping.entity}"
                write_cursor(conn, name, since.isoformat() if since else "", finished=False, now=at)
                scheduled.append(mapping.entity)
            write_cursor(
                conn, f"{BINDINGS_PREFIX}{mapping.entity}", at.isoformat(), finished=True, now=at
            )
    return scheduled


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two gap starts, where ``None`` (IDs only) is the latest of all."""
    if a is None or b is None:
        return a or b
    return min(a, b)


def pending(engine: Engine) -> dict[str, datetime | None]:
    """Scheduled reconciles not finished yet: entity → the gap's start (``None``: IDs only)."""
    out: dict[str, datetime | None] = {}
    for entity, (value, done) in cursors_named(engine, RECONCILE_PREFIX).items():
        if not done:
            out[entity] = datetime.fromisoformat(value) if value else None
    return out


async def run_pending(
    portal: ReconcilePortal, engine: Engine, mappings: MappingSet, connector_id: str
) -> dict[str, ReconcileStats]:
    """Run every scheduled reconcile (a kill during one resumes it at the next start)."""
    todo = await asyncio.to_thread(pending, engine)
    reconciler = Reconciler(portal, engine, mappings, connector_id=connector_id)
    done: dict[str, ReconcileStats] = {}
    for mapping in mappings:
        if mapping.entity in todo:
            done[mapping.entity] = await reconciler.entity(mapping, since=todo[mapping.entity])
    return done
