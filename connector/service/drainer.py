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
from typing import Any

from sqlalchemy import Engine

from connector.adapters.store.db_locks import RecordLocks
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.journal import Journal
from connector.adapters.store.unconfirmed_adds import ORIGIN_CODES
from connector.core.batch_commands import Command
from connector.core.mapping_model import MappingSet
from connector.core.queue_records import DrainPlan, plan_batch
from connector.errors import AmbiguousError, PortalError
from connector.service.drain_apply import apply_batch
from connector.service.drain_recovery import Recovery
from connector.service.drain_types import PAGE, QUEUE_LIMIT, DrainStats, PortalCalls

__all__ = ["QUEUE_LIMIT", "Checkpoint", "DrainStats", "Drainer", "PortalCalls"]

log = logging.getLogger(__name__)


Checkpoint = Callable[[str], None]
"""Called with the name of each step; tests make it raise to simulate a crash there:
``after_get``, ``after_reserve``, ``mid_apply``, ``after_commit``, ``after_clear``."""


def _no_checkpoint(_: str) -> None:
    return None


class Drainer(Recovery):
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
        record_locks: RecordLocks | None = None,
    ) -> None:
        """The composition root (``wiring.sync_services``) hands in the writer, the journal
        and the record locks; the defaults build them the same way, for tests and the
        benchmarks."""
        self.portal = portal
        self.engine = engine
        self.mappings = mappings
        self.connector_id = connector_id
        self.journal = journal or Journal(engine, connector_id, worker)
        self.peers_alive = peers_alive  # None: no registry, this worker is alone
        self.record_locks = record_locks or RecordLocks(engine, connector_id)
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
        return apply_batch(self, process_id, plan, states)

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
