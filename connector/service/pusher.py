"""The pusher: ERP edits from the outbox to the portal, batched, idempotent and echo-free.

One round (:meth:`Pusher.push_once`)::

    claim up to ``window`` records' pending outbox rows  (committed before any REST call)
    read the ERP rows, child rows and links              (one query per table)
    batch: crm.<entity>.list filter[@ID]                 (the portal's state of updates)
           + crm.<entity>.list ORIGIN_ID lookups          (adds an earlier try may have made)
    three-way merge per record against sync_link.base    (only fields the ERP moved go)
    batch: crm.<entity>.add / update / delete, ≤ 50 per request, + one read-back list
    per batch, one transaction: b24_id, value IDs, base, the portal's state applied
           through the drain's own apply path, outbox rows done / failed / held

Every call carries ``auth_connector`` (the REST client adds it), so the portal queues no
event for our writes; the commit runs in a connector transaction, so the outbox triggers
record nothing for it. A field equal to the base is never sent: a change that only echoes
what the portal already has costs no REST call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from connector.adapters.store.database import write_transaction
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.outbox import DONE, FAILED, HELD, OutboxStore, PendingRecord
from connector.adapters.store.push_state import LocalRecord, load_records
from connector.core.batch_commands import MAX_COMMANDS, Command, CommandOutcome
from connector.core.mapping_model import EntityMapping, MappingSet
from connector.core.merge import MergeResult
from connector.errors import FatalPortalError, RetriableError
from connector.service.drain_types import PortalCalls
from connector.service.push_commit import commit_chunk
from connector.service.push_fetch import fetch_states
from connector.service.push_planning import PushPlan, plan_record

log = logging.getLogger(__name__)

WINDOW = 2500
"""Records per round: one fetch batch covers 50 list commands × 50 IDs."""

Checkpoint = Callable[[str], None]
"""Called with ``after_claim``, ``after_fetch``, ``after_write`` (each write batch) and
``after_commit``; tests make it raise (or kill the process) to crash there."""


def _no_checkpoint(_: str) -> None:
    return None


@dataclass
class PushStats:
    records: int = 0
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    held: int = 0
    retry_later: int = 0
    by_entity: dict[str, int] = field(default_factory=dict)  # records written, per entity

    def add(self, other: PushStats) -> None:
        for name in vars(self):
            if name == "by_entity":
                for entity, n in other.by_entity.items():
                    self.by_entity[entity] = self.by_entity.get(entity, 0) + n
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))


class Pusher:
    def __init__(
        self,
        portal: PortalCalls,
        engine: Engine,
        mappings: MappingSet,
        connector_id: str,
        *,
        outbox: OutboxStore | None = None,
        writer: ErpWriter | None = None,
        window: int = WINDOW,
        checkpoint: Checkpoint = _no_checkpoint,
    ) -> None:
        self.portal = portal
        self.engine = engine
        self.mappings = mappings
        self.connector_id = connector_id
        self.outbox = outbox or OutboxStore(engine)
        self.writer = writer or ErpWriter(mappings)
        self.window = window
        self.checkpoint = checkpoint

    async def push_until_empty(self, max_rounds: int | None = None) -> PushStats:
        """Push rounds until a claim finds nothing (records held or refused stay behind)."""
        await asyncio.to_thread(self.outbox.release_dead)
        total = PushStats()
        rounds = 0
        while max_rounds is None or rounds < max_rounds:
            stats = await self.push_once()
            rounds += 1
            total.add(stats)
            if not stats.records or stats.retry_later == stats.records:
                break
        return total

    async def push_once(self) -> PushStats:
        claimed = await asyncio.to_thread(self.outbox.claim, self.window)
        if not claimed:
            return PushStats()
        self.checkpoint("after_claim")
        plans: list[PushPlan] = []
        try:
            plans = await asyncio.to_thread(self._plan, claimed)
            await self._fetch(plans)
            self.checkpoint("after_fetch")
            stats = await self._write(plans)
        except (RetriableError, FatalPortalError, OSError) as exc:
            open_rows = [i for p in plans if p.status is None for i in p.rec.row_ids]
            if not plans:
                open_rows = [i for rec in claimed for i in rec.row_ids]
            log.warning("push round stopped, %d outbox rows retried later: %s", len(open_rows), exc)
            await asyncio.to_thread(self.outbox.release, open_rows)
            raise
        return stats

    # --- plan ------------------------------------------------------------------------

    def _plan(self, claimed: list[PendingRecord]) -> list[PushPlan]:
        by_entity: dict[str, list[PendingRecord]] = {}
        for rec in claimed:
            by_entity.setdefault(rec.entity, []).append(rec)
        plans: list[PushPlan] = []
        with self.engine.connect() as conn:
            for entity, recs in by_entity.items():
                m = self.mappings.get(entity)
                if m is None:
                    for rec in recs:
                        plan = PushPlan(rec, None, LocalRecord(rec.erp_key, None))
                        plan.finish(FAILED, error=f"{entity}: no mapping names this entity")
                        plans.append(plan)
                    continue
                local = load_records(conn, self.writer, m, [r.erp_key for r in recs])
                plans += [plan_record(m, self.writer, rec, local[rec.erp_key]) for rec in recs]
        return plans

    async def _fetch(self, plans: list[PushPlan]) -> None:
        await fetch_states(self.portal, self.mappings, self.writer, self.connector_id, plans)

    # --- write -----------------------------------------------------------------------

    async def _write(self, plans: list[PushPlan]) -> PushStats:
        stats = PushStats(records=len(plans))
        by_entity: dict[str, list[PushPlan]] = {}
        for plan in plans:
            by_entity.setdefault(plan.m.entity if plan.m else "", []).append(plan)
        intents = []
        for plan in plans:
            if plan.command is not None and plan.m is not None and plan.kind != "delete":
                agreed = MergeResult(agreed=dict(plan.pushed))
                intents.append((plan.rec.row_ids, self.writer._new_base(plan.m, None, agreed)))
        await asyncio.to_thread(self.outbox.record_intents, intents)
        for entity, group in by_entity.items():
            m = self.mappings.get(entity)
            sending = [p for p in group if p.command is not None]
            quiet = [p for p in group if p.command is None]
            if m is None:
                await asyncio.to_thread(self._commit, None, quiet, {}, stats)
                continue
            if quiet:
                await asyncio.to_thread(self._commit, m, quiet, {}, stats)
            for chunk in _chunks_for(sending):
                commands: list[Command] = []
                for p in chunk:
                    assert p.command is not None
                    commands.append(p.command)
                readback = _readback(m, chunk)
                if readback is not None:
                    commands.append(readback)
                outcomes = dict(await self.portal.batch(commands))
                self.checkpoint("after_write")
                if readback is not None and not outcomes["readback"].ok:
                    outcomes["readback"] = await self._read_again(m, chunk, outcomes)
                await asyncio.to_thread(self._commit, m, chunk, outcomes, stats)
        self.checkpoint("after_commit")
        return stats

    async def _read_again(
        self, m: EntityMapping, chunk: list[PushPlan], outcomes: Mapping[str, CommandOutcome]
    ) -> CommandOutcome:
        """The read-back failed (say, an add it referred to was refused): read by known IDs."""
        ids: list[int] = []
        for plan in chunk:
            if not plan.readback or plan.command is None:
                continue
            outcome = outcomes.get(plan.command.key)
            if outcome is None or not outcome.ok:
                continue
            ids.append(int(outcome.result) if plan.kind == "add" else int(plan.b24_id or 0))
        if not ids:
            return outcomes["readback"]
        command = Command(
            "readback",
            f"{m.entity}.list",
            {
                "filter": {"@ID": ids},
                "select": m.portal_codes(),
                "order": {"ID": "ASC"},
                "start": -1,
            },
        )
        return (await self.portal.batch([command]))["readback"]

    def _commit(
        self,
        m: EntityMapping | None,
        chunk: list[PushPlan],
        outcomes: Mapping[str, CommandOutcome],
        stats: PushStats,
    ) -> None:
        now = datetime.now(UTC)
        with write_transaction(self.engine) as conn:
            commit_chunk(conn, self.writer, m, chunk, outcomes, now)
            for plan in chunk:
                status = plan.status or DONE
                if status == "retry":
                    continue
                rows = plan.rec.row_ids
                if status == FAILED and len(rows) > 1:  # one refusal per record, on its last row
                    *folded, last = rows
                    OutboxStore.finish(conn, folded, DONE, note=f"folded into outbox row {last}")
                    rows = (last,)
                OutboxStore.finish(
                    conn,
                    rows,
                    status,
                    note=plan.note or None,
                    code=plan.error_code,
                    error=plan.error,
                )
                if status == DONE and plan.kind in ("add", "update", "delete"):
                    OutboxStore.supersede_failed(
                        conn, plan.rec.entity, plan.rec.erp_key, "superseded by a later push"
                    )
        retry = [i for p in chunk if p.status == "retry" for i in p.rec.row_ids]
        if retry:
            self.outbox.release(retry)
        for plan in chunk:
            _count(stats, plan)
            if plan.status == FAILED:
                log.warning("outbox: %s", plan.error)


def _count(stats: PushStats, plan: PushPlan) -> None:
    if plan.status == FAILED:
        stats.failed += 1
    elif plan.status == HELD:
        stats.held += 1
    elif plan.status == "retry":
        stats.retry_later += 1
    elif plan.command is None:
        stats.unchanged += 1
    else:
        if plan.kind == "add":
            stats.added += 1
        elif plan.kind == "delete":
            stats.deleted += 1
        else:
            stats.updated += 1
        stats.by_entity[plan.rec.entity] = stats.by_entity.get(plan.rec.entity, 0) + 1


def _chunks_for(plans: list[PushPlan]) -> list[list[PushPlan]]:
    """Write batches: 50 commands, or 49 and a read-back when a batch needs one."""
    chunks: list[list[PushPlan]] = []
    current: list[PushPlan] = []
    needs = False
    for plan in plans:
        wants = needs or plan.readback
        if len(current) + 1 + (1 if wants else 0) > MAX_COMMANDS:
            chunks.append(current)
            current, needs = [], False
            wants = plan.readback
        current.append(plan)
        needs = wants
    if current:
        chunks.append(current)
    return chunks


def _readback(m: EntityMapping, chunk: list[PushPlan]) -> Command | None:
    """One list command reading back the records whose new value IDs we need."""
    from connector.core.batch_commands import result_ref

    ids: list[Any] = []
    for plan in chunk:
        if not plan.readback or plan.command is None:
            continue
        ids.append(result_ref(plan.command.key) if plan.kind == "add" else plan.b24_id)
    if not ids:
        return None
    return Command(
        "readback",
        f"{m.entity}.list",
        {"filter": {"@ID": ids}, "select": m.portal_codes(), "order": {"ID": "ASC"}, "start": -1},
    )
