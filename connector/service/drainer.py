"""The drain cycle: reserve a batch of the offline queue, apply it, then clear it.

One cycle (digest §7.6–7.9, §7.12, A7), in steady state one request::

    batch (halt): event.offline.error + event.offline.clear of the previous batch,
                  crm.<entity>.list filter[@ID] of this batch (50 IDs a sub-call),
                  event.offline.get clear=0 limit=500 → the next batch, reserved ahead
    journal: previous → cleared; the next batch reserved (committed before acting)
    one transaction: apply each record of this batch to the ERP tables + journal → applied

The first batch of a drain is reserved by a ``get`` of its own (carrying a clear still
owed); the sub-calls run in order, so a ``get`` never sees what was just cleared, and a
failed clear or fetch halts the batch before its ``get`` reserves anything. A drain of
``n`` batches is ``n + 2`` requests: the first ``get``, one per batch, and the last clear
with the ``get`` that finds the queue empty (or alone through :meth:`Drainer.flush`, which
also applies a batch reserved ahead, when draining stops early). A fetch too big to share
a batch (over 50 sub-calls with the others) goes alone, as does a clear then.

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
from connector.core.batch_commands import MAX_COMMANDS, Command, CommandOutcome
from connector.core.mapping_model import MappingSet
from connector.core.queue_records import DrainPlan, plan_batch
from connector.errors import AmbiguousError, PortalError
from connector.service.drain_apply import apply_batch
from connector.service.drain_recovery import Recovery
from connector.service.drain_requests import (
    Owed,
    clear_commands,
    fetch_commands,
    fetched_states,
    get_command,
)
from connector.service.drain_types import QUEUE_LIMIT, DrainStats, PortalCalls

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
        self._unsent: Owed | None = None  # applied, not cleared
        self._ahead: tuple[str, list[Any]] | None = None  # reserved and journaled, not applied
        self._capped: int | None = None  # a portal seen returning fewer than asked
        self.orphan_grace = orphan_grace
        self.writer = writer or ErpWriter(mappings)
        self.limit = limit
        self.checkpoint = checkpoint
        self.adopt_orphans = adopt_orphans

    # --- the cycle ---------------------------------------------------------------------

    async def drain_once(self, *, ahead: bool = True) -> DrainStats:
        """See one batch through; ``records == 0`` means the queue was empty.

        The batch is the one the previous cycle reserved ahead, or else one reserved now.
        ``ahead=False`` reserves none for the next cycle (the last one of a bounded run).
        The database is asked first: with it down, nothing is reserved in the portal that
        the journal could not record (the failure surfaces before the ``get``)."""
        await asyncio.to_thread(self.journal.ping)
        if self._ahead is not None:
            process_id, events = self._ahead
            self._ahead = None
            return await self._process(process_id, events, fold=True, ahead=ahead)
        try:
            result = await self._reserve_next()
        except AmbiguousError as exc:
            log.warning("%s; looking up the records it may have reserved", exc)
            found = await self.recover_orphans()
            if not found.resumed:
                raise  # nothing was reserved: an ordinary transient failure
            return found
        got = self._reserved(result)
        if got is None:
            return DrainStats()
        self.checkpoint("after_get")
        return await self._process(*got, fold=True, ahead=ahead)

    async def drain_until_empty(self, max_batches: int | None = None) -> DrainStats:
        total = DrainStats()
        while max_batches is None or total.batches < max_batches:
            last = max_batches is not None and total.batches + 1 >= max_batches
            stats = await self.drain_once(ahead=not last)
            if not stats.records:
                break
            total.add(stats)
        total.add(await self.flush())
        return total

    async def flush(self) -> DrainStats:
        """Finish what draining owes when it stops before the queue ran empty: the batch
        reserved ahead (applied now) and the clear of the last applied batch."""
        stats = DrainStats()
        if self._ahead is not None:
            process_id, events = self._ahead
            self._ahead = None
            stats = await self._process(process_id, events, fold=True, ahead=False)
        if self._unsent is not None:
            process_id, record_ids, flagged = self._unsent
            await self._finish(process_id, record_ids, flagged)
            self._unsent = None
        return stats

    def _reserved(self, result: Mapping[str, Any]) -> tuple[str, list[Any]] | None:
        """``(process_id, events)`` of a ``get`` answer, ``None`` for an empty queue."""
        events = result.get("events") or []
        process_id = result.get("process_id")
        if not events:
            return None
        self._notice_cap(len(events))
        if not isinstance(process_id, str) or not process_id:
            raise PortalError(
                "event.offline.get clear=0 answered without a process_id "
                "(is the extended queue available on this plan?)",
                method="event.offline.get",
            )
        return process_id, list(events)

    async def _reserve_next(self) -> Mapping[str, Any]:
        """``event.offline.get``, carrying the previous batch's error + clear if one is owed."""
        get = get_command(self.limit)
        if self._unsent is None:
            answer = await self.portal.call(get.method, get.params)
            return answer.result if isinstance(answer.result, Mapping) else {}
        owed = clear_commands(self._unsent)
        # halt: a failed flag must not let the clear delete the records it should hold,
        # and a failed clear must not let a get reserve more before it is sorted out
        outcomes = await self.portal.batch([*owed, get], halt=True)
        await self._cleared(owed, outcomes)
        got = outcomes["get"]
        if got.error is not None:
            raise got.error
        return got.result if isinstance(got.result, Mapping) else {}

    async def _cleared(
        self, owed: Sequence[Command], outcomes: Mapping[str, CommandOutcome]
    ) -> None:
        """The owed clear went with a batch: raise its failure, or record it done."""
        failed = next((outcomes[c.key].error for c in owed if outcomes[c.key].error), None)
        if failed is not None:  # still owed: the journal says APPLIED, a resume finishes it
            log.warning("clearing process %s failed: %s", owed[-1].params["process_id"], failed)
            raise failed
        assert self._unsent is not None
        process_id = self._unsent[0]
        self._unsent = None
        self.checkpoint("after_clear")
        await asyncio.to_thread(self.journal.mark_cleared, process_id)

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
        self, process_id: str, events: list[Any], *, fold: bool = False, ahead: bool = False
    ) -> DrainStats:
        plan = plan_batch(events, self.mappings)
        record_ids = plan.record_ids()
        await asyncio.to_thread(self.journal.reserve, process_id, events, record_ids)
        self.checkpoint("after_reserve")
        # Per-record order across workers: a peer's batch naming the same records waits
        # here until this one committed, then fetches the newer state.
        targets = [(entity, i) for entity, ids in plan.targets().items() for i in ids]
        held = await asyncio.to_thread(self.record_locks.acquire, targets)
        lost_get = False
        try:
            if fold:
                states, lost_get = await self._fetch_carrying(plan, ahead=ahead)
            else:
                states = await self._fetch(plan)
            stats, flagged = await asyncio.to_thread(self._apply, process_id, plan, states)
        finally:
            await asyncio.to_thread(self.record_locks.release, held)
        self.checkpoint("after_commit")
        if fold:  # cleared by the request that fetches (or reserves) the next batch
            if self._unsent is not None:  # never two owed at once
                owed, self._unsent = self._unsent, None
                await self._finish(*owed)
            self._unsent = (process_id, list(record_ids), list(flagged))
        else:
            await self._finish(process_id, record_ids, flagged)
        if lost_get:  # the next batch may be locked for us under a pid we never saw
            stats.add(await self.recover_orphans())
        return stats

    async def _fetch(self, plan: DrainPlan) -> dict[tuple[str, int], Mapping[str, Any]]:
        """Current state of every touched entity, in one batch request."""
        commands = fetch_commands(plan, self.mappings)
        if not commands:
            return {}
        return fetched_states(commands, await self.portal.batch(commands))

    async def _fetch_carrying(
        self, plan: DrainPlan, *, ahead: bool
    ) -> tuple[dict[tuple[str, int], Mapping[str, Any]], bool]:
        """The fetch, carrying the owed clear before it and (``ahead``) the ``get`` of the
        next batch after it, so that a steady drain is one request per batch.

        The sub-calls run in order with ``halt``: a failed clear or fetch stops the ``get``
        (nothing is reserved that this cycle could not see through). The batch reserved
        ahead is journaled at once, before this one is applied. A lost answer is repeated
        as a plain fetch (a read), and the orphans it may have left are looked up after
        the apply; ``True`` says so."""
        fetch = fetch_commands(plan, self.mappings)
        owed = clear_commands(self._unsent) if self._unsent is not None else []
        get = [get_command(self.limit)] if ahead else []
        if not fetch or len(owed) + len(fetch) + len(get) > MAX_COMMANDS:
            return await self._fetch(plan), False
        try:
            outcomes = await self.portal.batch([*owed, *fetch, *get], halt=True)
        except AmbiguousError as exc:
            log.warning("%s; fetching again, then looking up what it may have reserved", exc)
            return await self._fetch(plan), True
        if owed:
            await self._cleared(owed, outcomes)
        states = fetched_states(fetch, outcomes)
        if get and outcomes["get"].error is None:  # a refused get: the next cycle asks again
            result = outcomes["get"].result
            got = self._reserved(result if isinstance(result, Mapping) else {})
            if got is not None:
                self.checkpoint("after_get")
                next_plan = plan_batch(got[1], self.mappings)
                await asyncio.to_thread(
                    self.journal.reserve, got[0], got[1], next_plan.record_ids()
                )
                self._ahead = got
        elif get:
            log.warning("reserving the next batch failed: %s", outcomes["get"].error)
        return states, False

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
