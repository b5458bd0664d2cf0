"""The drain cycle: reserve a batch of the offline queue, apply it, then clear it.

One cycle (digest §7.6–7.9, §7.12, A7)::

    batch: event.offline.error + event.offline.clear of the previous batch,
           then event.offline.get clear=0 limit=500 → process_id + records
    journal: previous → cleared; reserve(process_id, records) (committed before acting)
    batch: crm.<entity>.list filter[@ID]  (one request fetches every touched entity)
    one transaction: apply each record to the ERP tables + journal → applied

So a cycle is two requests whatever the batch size: the clear of a batch travels in the
request that reserves the next one (the sub-calls run in order, so the ``get`` never sees
what was just cleared). The last clear goes with the ``get`` that finds the queue empty,
or alone through :meth:`Drainer.flush` when draining stops early.

A crash anywhere re-delivers: :meth:`Drainer.resume` re-reads every unfinished
``process_id`` (``event.offline.get process_id=…``) before new work is taken, and adopts
locked records whose ``process_id`` never reached the journal (found through
``event.offline.list``). Applying the same portal state twice changes nothing.

With several workers on one database, a worker resumes only its own entries and those of
workers whose lease expired (``sync_worker``), and an orphan is claimed only after a short
grace (a live peer may be between its ``get`` and its journal write). A ``get`` whose
answer was lost (``AmbiguousError``) is not retried blindly: the orphans are looked up
and adopted at once, in the same cycle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from connector.adapters.store.database import write_transaction
from connector.adapters.store.db_locks import RecordLocks
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.journal import APPLIED, Journal, JournalEntry
from connector.adapters.store.outbox import OutboxStore
from connector.adapters.store.unconfirmed_adds import ORIGIN_CODES, without_unconfirmed_adds
from connector.core.batch_commands import Command, CommandOutcome
from connector.core.mapping_model import MappingSet
from connector.core.queue_records import DrainPlan, plan_batch
from connector.errors import AmbiguousError, PortalError

log = logging.getLogger(__name__)

PAGE = 50
QUEUE_LIMIT = 500
"""Records per ``event.offline.get`` (``B24_QUEUE_LIMIT``): the source has no cap (A7)."""


class Answerish(Protocol):
    @property
    def result(self) -> Any: ...


class PortalCalls(Protocol):
    """What the drainer needs from the REST client (``connector.adapters.rest_client``)."""

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Answerish: ...

    async def batch(
        self, commands: Sequence[Command], *, halt: bool = False
    ) -> dict[str, CommandOutcome]: ...


@dataclass
class DrainStats:
    batches: int = 0
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    conflicts: int = 0
    bad: int = 0
    resumed: int = 0
    lag_s: float = 0.0  # age of the oldest portal change a batch took (the largest seen)
    by_entity: dict[str, int] = field(default_factory=dict)  # records applied, per entity

    def add(self, other: DrainStats) -> None:
        for name in vars(self):
            if name == "lag_s":
                self.lag_s = max(self.lag_s, other.lag_s)
            elif name == "by_entity":
                for entity, n in other.by_entity.items():
                    self.by_entity[entity] = self.by_entity.get(entity, 0) + n
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))


Checkpoint = Callable[[str], None]
"""Called with the name of each step; tests make it raise to simulate a crash there:
``after_get``, ``after_reserve``, ``mid_apply``, ``after_commit``, ``after_clear``."""


def _no_checkpoint(_: str) -> None:
    return None


def _oldest_age(plan: DrainPlan, now: datetime) -> float:
    """Seconds since the oldest TIMESTAMP_X in the batch (0 when none parses)."""
    ages = []
    for rec in plan.records:
        try:
            moment = datetime.fromisoformat(rec.timestamp)
        except ValueError:
            continue
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        ages.append((now - moment).total_seconds())
    return max(0.0, max(ages)) if ages else 0.0


class Drainer:
    def __init__(
        self,
        portal: PortalCalls,
        engine: Engine,
        mappings: MappingSet,
        connector_id: str,
        *,
        worker: str = "",
        limit: int = QUEUE_LIMIT,
        checkpoint: Checkpoint = _no_checkpoint,
        adopt_orphans: bool = True,
        writer: ErpWriter | None = None,
        journal: Journal | None = None,
        peers_alive: Callable[[], bool] | None = None,
        orphan_grace: float = 2.0,
    ) -> None:
        self.portal = portal
        self.engine = engine
        self.mappings = mappings
        self.connector_id = connector_id
        self.journal = journal or Journal(engine, connector_id, worker)
        self.peers_alive = peers_alive  # None: no registry, this worker is alone
        self.record_locks = RecordLocks(engine, connector_id)
        self._unsent: tuple[str, list[int], list[str]] | None = None  # applied, not cleared
        self._capped: int | None = None  # a portal seen returning fewer than asked
        self.orphan_grace = orphan_grace
        self.writer = writer or ErpWriter(mappings)
        self.limit = limit
        self.checkpoint = checkpoint
        self.adopt_orphans = adopt_orphans

    # --- the cycle ---------------------------------------------------------------------

    async def drain_once(self) -> DrainStats:
        """Reserve one batch and see it through; ``records == 0`` means the queue was empty.

        The database is asked first: with it down, nothing is reserved in the portal that
        the journal could not record (the failure surfaces before the ``get``)."""
        await asyncio.to_thread(self.journal.ping)
        try:
            result = await self._reserve_next()
        except AmbiguousError as exc:
            log.warning("%s; looking up the records it may have reserved", exc)
            found = await self.recover_orphans()
            if not found.resumed:
                raise  # nothing was reserved: an ordinary transient failure
            return found
        events = result.get("events") or []
        process_id = result.get("process_id")
        if not events:
            return DrainStats()
        self._notice_cap(len(events))
        if not isinstance(process_id, str) or not process_id:
            raise PortalError(
                "event.offline.get clear=0 answered without a process_id "
                "(is the extended queue available on this plan?)",
                method="event.offline.get",
            )
        self.checkpoint("after_get")
        return await self._process(process_id, list(events), fold=True)

    async def drain_until_empty(self, max_batches: int | None = None) -> DrainStats:
        total = DrainStats()
        while max_batches is None or total.batches < max_batches:
            stats = await self.drain_once()
            if not stats.records:
                break
            total.add(stats)
        await self.flush()
        return total

    async def flush(self) -> None:
        """Send the clear still owed for the last applied batch (when draining stops
        before a next ``get`` could carry it)."""
        if self._unsent is not None:
            process_id, record_ids, flagged = self._unsent
            await self._finish(process_id, record_ids, flagged)
            self._unsent = None

    async def _reserve_next(self) -> Mapping[str, Any]:
        """``event.offline.get``, carrying the previous batch's error + clear if one is owed."""
        get = {"clear": 0, "limit": self.limit}
        if self._unsent is None:
            answer = await self.portal.call("event.offline.get", get)
            return answer.result if isinstance(answer.result, Mapping) else {}
        process_id, record_ids, flagged = self._unsent
        commands = []
        if flagged:
            commands.append(
                Command(
                    "flag",
                    "event.offline.error",
                    {"process_id": process_id, "message_id": list(flagged)},
                )
            )
        commands.append(
            Command("clear", "event.offline.clear", {"process_id": process_id, "id": record_ids})
        )
        commands.append(Command("get", "event.offline.get", get))
        # halt: a failed flag must not let the clear delete the records it should hold,
        # and a failed clear must not let a get reserve more before it is sorted out
        outcomes = await self.portal.batch(commands, halt=True)
        failed = next((outcomes[c.key].error for c in commands[:-1] if outcomes[c.key].error), None)
        if failed is not None:  # still owed: the journal says APPLIED, a resume finishes it
            log.warning("clearing process %s failed: %s", process_id, failed)
            raise failed
        self._unsent = None
        self.checkpoint("after_clear")
        await asyncio.to_thread(self.journal.mark_cleared, process_id)
        got = outcomes["get"]
        if got.error is not None:
            raise got.error
        return got.result if isinstance(got.result, Mapping) else {}

    def _notice_cap(self, returned: int) -> None:
        """A portal answering fewer records than asked, again and again while more are
        queued, caps the batch: say so once (the drain goes on, in smaller strides)."""
        if returned >= self.limit:
            return
        if self._capped is None:
            self._capped = returned
        elif self._capped == returned:
            log.warning(
                "the portal returns at most %d queue records per event.offline.get "
                "(asked %d); B24_QUEUE_LIMIT=%d saves nothing here",
                returned,
                self.limit,
                returned,
            )
            self._capped = -1  # said once

    async def _process(
        self, process_id: str, events: list[Any], *, fold: bool = False
    ) -> DrainStats:
        plan = plan_batch(events, self.mappings)
        record_ids = plan.record_ids()
        await asyncio.to_thread(self.journal.reserve, process_id, events, record_ids)
        self.checkpoint("after_reserve")
        # Per-record order across workers: a peer's batch naming the same records waits
        # here until this one committed, then fetches the newer state.
        targets = [(entity, i) for entity, ids in plan.targets().items() for i in ids]
        held = await asyncio.to_thread(self.record_locks.acquire, targets)
        try:
            states = await self._fetch(plan)
            stats, flagged = await asyncio.to_thread(self._apply, process_id, plan, states)
        finally:
            await asyncio.to_thread(self.record_locks.release, held)
        self.checkpoint("after_commit")
        if fold:  # cleared by the request that reserves the next batch
            await self.flush()  # (never two owed at once)
            self._unsent = (process_id, list(record_ids), list(flagged))
        else:
            await self._finish(process_id, record_ids, flagged)
        return stats

    async def _fetch(self, plan: DrainPlan) -> dict[tuple[str, int], Mapping[str, Any]]:
        """Current state of every touched entity, in one batch request."""
        commands: list[Command] = []
        for entity, ids in plan.targets().items():
            mapping = self.mappings.entities[entity]
            for n, start in enumerate(range(0, len(ids), PAGE)):
                chunk = ids[start : start + PAGE]
                commands.append(
                    Command(
                        key=f"{entity.replace('.', '_')}_{n}",
                        method=f"{entity}.list",
                        params={
                            "filter": {"@ID": chunk},
                            "select": [*mapping.portal_codes(), *ORIGIN_CODES],
                            "order": {"ID": "ASC"},
                            "start": -1,
                        },
                    )
                )
        if not commands:
            return {}
        outcomes = await self.portal.batch(commands)
        states: dict[tuple[str, int], Mapping[str, Any]] = {}
        for command in commands:
            outcome = outcomes[command.key]
            if outcome.error is not None:
                raise outcome.error
            entity = command.method.removesuffix(".list")
            for row in outcome.result or []:
                if isinstance(row, Mapping) and str(row.get("ID", "")).isdigit():
                    states[(entity, int(row["ID"]))] = row
        return states

    def _apply(
        self, process_id: str, plan: DrainPlan, states: Mapping[tuple[str, int], Mapping[str, Any]]
    ) -> tuple[DrainStats, list[str]]:
        stats = DrainStats(batches=1, records=len(plan.records) + len(plan.bad))
        flagged: list[str] = []
        now = datetime.now(UTC)
        stats.lag_s = _oldest_age(plan, now)
        if plan.unmapped:
            names = sorted({name for _, name in plan.unmapped})
            log.info(
                "clearing %d queue records of events no mapping names: %s",
                len(plan.unmapped),
                ", ".join(names),
            )
        with write_transaction(self.engine) as conn:
            for bad in plan.bad:
                # A payload with no usable record in it (no entity ID, no name): nothing
                # can merge into it or fix it, so holding it would hold it for good. It
                # is kept whole in sync_record_error (errors list) and cleared.
                log.warning("bad queue record, kept in sync_record_error: %s", bad.error)
                self.writer.record_error(
                    conn,
                    bad.error,
                    b24_id=None,
                    message_id=bad.message_id,
                    payload=bad.raw,
                    now=now,
                )
                stats.bad += 1
            # One apply of each entity's current state (several records, one entity: the
            # first wins), in bulk per entity type. The crash point "mid_apply" sits after
            # the first chunk is written, so a crash there must roll the whole batch back.
            groups: dict[str, list[tuple[int, Mapping[str, Any] | None, str | None]]] = {}
            for rec in plan.records:
                item = (rec.entity_id, states.get((rec.entity, rec.entity_id)), rec.message_id)
                groups.setdefault(rec.entity, []).append(item)
            hook: Callable[[], None] | None = (
                (lambda: self.checkpoint("mid_apply")) if len(plan.records) > 1 else None
            )
            for entity, items in groups.items():
                m = self.mappings.entities[entity]
                items = without_unconfirmed_adds(conn, self.writer, m, self.connector_id, items)
                outcomes = self.writer.apply_many(conn, m, items, now=now, on_progress=hook)
                hook = None
                unsent = {
                    o.erp_key: sorted(o.pending_push)
                    for o in outcomes
                    if o.pending_push and o.erp_key is not None and o.action != "conflict"
                }
                OutboxStore.ensure_pending(conn, entity, unsent)
                synced = [o.b24_id for o in outcomes if o.error is None and o.action != "skipped"]
                self.writer.resolve_errors(conn, entity, synced, now)
                for (b24_id, record, message_id), outcome in zip(items, outcomes, strict=True):
                    if outcome.action == "skipped":
                        continue
                    if outcome.error is not None:
                        log.warning("record not synced: %s", outcome.error)
                        self.writer.record_error(
                            conn,
                            outcome.error,
                            b24_id=b24_id,
                            message_id=message_id,
                            payload=record,
                            now=now,
                        )
                        stats.bad += 1
                        if message_id:
                            flagged.append(message_id)
                    elif outcome.action == "conflict":
                        stats.conflicts += 1
                        log.info(
                            "conflict held",
                            extra={
                                "entity": entity,
                                "id": b24_id,
                                "fields": ",".join(outcome.conflicts),
                                "conflict": outcome.conflict_id,
                            },
                        )
                        flagged += [
                            r.message_id
                            for r in plan.records
                            if (r.entity, r.entity_id) == (entity, b24_id)
                        ]
                    else:
                        setattr(stats, outcome.action, getattr(stats, outcome.action) + 1)
                        stats.by_entity[entity] = stats.by_entity.get(entity, 0) + 1
            self.journal.mark_applied(conn, process_id, sorted(set(flagged)))
        return stats, sorted(set(flagged))

    async def _finish(
        self, process_id: str, record_ids: Sequence[int], flagged: Sequence[str]
    ) -> None:
        if flagged:
            await self.portal.call(
                "event.offline.error", {"process_id": process_id, "message_id": list(flagged)}
            )
        await self.portal.call(
            "event.offline.clear", {"process_id": process_id, "id": list(record_ids)}
        )
        self.checkpoint("after_clear")
        await asyncio.to_thread(self.journal.mark_cleared, process_id)

    # --- recovery ----------------------------------------------------------------------

    async def resume(self) -> DrainStats:
        """Finish every process the journal knows, then adopt orphaned locks."""
        total = DrainStats()
        entries = await asyncio.to_thread(self.journal.unfinished)
        for entry in entries:
            if not await asyncio.to_thread(self.journal.adopt, entry):
                continue  # a live peer adopted it first
            if entry.worker and entry.worker != self.journal.worker:
                log.warning("adopting process %s of dead worker %s", entry.process_id, entry.worker)
            else:
                log.info("resuming process %s (%s)", entry.process_id, entry.state)
            total.resumed += 1
            total.add(await self._resume_entry(entry))
        if self.adopt_orphans:
            total.add(await self.recover_orphans())
        return total

    async def _resume_entry(self, entry: JournalEntry) -> DrainStats:
        if self._unsent is not None and self._unsent[0] == entry.process_id:
            self._unsent = None  # finished here and now
        if entry.state == APPLIED:
            await self._finish(entry.process_id, entry.record_ids, entry.flagged)
            return DrainStats()
        return await self._resume_reserved(entry.process_id)

    async def recover_orphans(self) -> DrainStats:
        """Finish every process the portal holds locked for us that no journal row names."""
        total = DrainStats()
        pids = await self._orphans()
        if pids and self.peers_alive is not None and self.peers_alive():
            # A live peer may be between its get and its journal write: give it a moment.
            await asyncio.sleep(self.orphan_grace)
            known = await asyncio.to_thread(self.journal.known, pids)
            pids = [p for p in pids if p not in known]
        for pid in pids:
            if not await asyncio.to_thread(self.journal.claim, pid):
                continue  # a peer claimed it
            log.warning("adopting process %s: locked in the portal, unknown here", pid)
            total.resumed += 1
            total.add(await self._resume_reserved(pid))
        return total

    async def _resume_reserved(self, process_id: str) -> DrainStats:
        events: list[Any] = []
        for error in (0, 1):  # a released held record keeps ERROR=1 while it is locked
            answer = await self.portal.call(
                "event.offline.get", {"process_id": process_id, "clear": 0, "error": error}
            )
            result = answer.result if isinstance(answer.result, Mapping) else {}
            events = list(result.get("events") or [])
            if events:
                break
        if not events:
            await asyncio.to_thread(self.journal.reserve, process_id, [], [])
            await asyncio.to_thread(self.journal.mark_cleared, process_id)
            return DrainStats()
        return await self._process(process_id, events)

    async def _orphans(self) -> list[str]:
        """Process ids holding locked records of this connector that the journal lacks."""
        pids: list[str] = []
        start = 0
        # PROCESS_ID > '' selects the locked records: the rest module hands string
        # filters to SQL as plain comparisons, and every process id sorts after ''.
        # Filtering there keeps a start-up after a long outage from paging the backlog.
        while True:
            answer = await self.portal.call(
                "event.offline.list",
                {"filter": {">PROCESS_ID": ""}, "order": {"ID": "ASC"}, "start": start},
            )
            rows = answer.result if isinstance(answer.result, list) else []
            for row in rows:
                pid = row.get("PROCESS_ID") if isinstance(row, Mapping) else None
                if isinstance(pid, str) and pid and pid not in pids:
                    pids.append(pid)
            nxt = getattr(answer, "next", None)
            if not rows or not isinstance(nxt, int):
                break
            start = nxt
        known = await asyncio.to_thread(self.journal.known, pids)
        return [p for p in pids if p not in known]
