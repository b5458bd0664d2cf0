"""The local commit of one drain batch: every record's current state into the ERP tables.

In one transaction (``write_transaction``): the payloads no record can be read from are
kept whole in ``sync_record_error`` (and cleared: holding them would hold them for good);
each entity's records are applied in bulk (``ErpWriter.apply_many``; several queue
records of one entity apply its current state once); the ERP's own unpushed changes stay
pending in the outbox; records that synced close their open errors; records that did not
are kept in ``sync_record_error`` and flagged; conflicts are flagged; the journal entry
becomes ``applied``. A crash anywhere in it rolls the whole batch back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from connector.adapters.store.database import write_transaction
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.journal import Journal
from connector.adapters.store.outbox import OutboxStore
from connector.adapters.store.unconfirmed_adds import without_unconfirmed_adds
from connector.core.mapping_model import MappingSet
from connector.core.queue_records import DrainPlan
from connector.service.drain_types import DrainStats

__all__ = ["BatchHost", "apply_batch", "oldest_age"]

log = logging.getLogger("connector.service.drainer")


class BatchHost(Protocol):
    """What the commit needs from the drainer."""

    engine: Engine
    mappings: MappingSet
    connector_id: str
    writer: ErpWriter
    journal: Journal
    checkpoint: Callable[[str], None]


def oldest_age(plan: DrainPlan, now: datetime) -> float:
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


def apply_batch(
    host: BatchHost,
    process_id: str,
    plan: DrainPlan,
    states: Mapping[tuple[str, int], Mapping[str, Any]],
) -> tuple[DrainStats, list[str]]:
    """Apply a reserved batch in one transaction and mark it applied in the journal.

    Returns the counts and the message ids to flag (``event.offline.error``): the
    records held by a conflict and those that could not be synced (each kept in
    ``sync_record_error``, naming the record and the field)."""
    stats = DrainStats(batches=1, records=len(plan.records) + len(plan.bad))
    flagged: list[str] = []
    now = datetime.now(UTC)
    stats.lag_s = oldest_age(plan, now)
    if plan.unmapped:
        names = sorted({name for _, name in plan.unmapped})
        log.info(
            "clearing %d queue records of events no mapping names: %s",
            len(plan.unmapped),
            ", ".join(names),
        )
    with write_transaction(host.engine) as conn:
        for bad in plan.bad:
            # A payload with no usable record in it (no entity ID, no name): nothing
            # can merge into it or fix it, so holding it would hold it for good. It
            # is kept whole in sync_record_error (errors list) and cleared.
            log.warning("bad queue record, kept in sync_record_error: %s", bad.error)
            host.writer.record_error(
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
            (lambda: host.checkpoint("mid_apply")) if len(plan.records) > 1 else None
        )
        for entity, items in groups.items():
            m = host.mappings.entities[entity]
            items = without_unconfirmed_adds(conn, host.writer, m, host.connector_id, items)
            outcomes = host.writer.apply_many(conn, m, items, now=now, on_progress=hook)
            hook = None
            unsent = {
                o.erp_key: sorted(o.pending_push)
                for o in outcomes
                if o.pending_push and o.erp_key is not None and o.action != "conflict"
            }
            OutboxStore.ensure_pending(conn, entity, unsent)
            synced = [o.b24_id for o in outcomes if o.error is None and o.action != "skipped"]
            host.writer.resolve_errors(conn, entity, synced, now)
            for (b24_id, record, message_id), outcome in zip(items, outcomes, strict=True):
                if outcome.action == "skipped":
                    continue
                if outcome.error is not None:
                    log.warning("record not synced: %s", outcome.error)
                    host.writer.record_error(
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
        host.journal.mark_applied(conn, process_id, sorted(set(flagged)))
    return stats, sorted(set(flagged))
