"""Offline queue records as the connector sees them, and the plan for one drained batch.

``event.offline.get`` answers mixed JSON types (digest A15): the record ``ID`` is a string,
``EVENT_DATA.FIELDS.ID`` a number, ``EVENT_ADDITIONAL`` sometimes ``[]``. :func:`parse_record`
normalises leniently and rejects what cannot be used with a :class:`RecordError` naming
the queue record and the missing field, so one bad record never stops a batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.core.mapping_model import MappingSet
from connector.core.portal_answers import as_int
from connector.errors import RecordError


@dataclass(frozen=True)
class QueueRecord:
    """One usable queue record."""

    record_id: int  # the queue record's ID (not the entity's)
    message_id: str
    event_name: str
    entity: str
    action: str  # ADD | UPDATE | DELETE
    entity_id: int
    user_id: int | None
    timestamp: str


@dataclass(frozen=True)
class BadRecord:
    """A record that cannot be synced; kept for the operator, flagged in the portal."""

    record_id: int | None
    message_id: str | None
    error: RecordError
    raw: Mapping[str, Any]


@dataclass
class DrainPlan:
    """What one batch asks for: the entities to fetch, the records to act on, the bad ones."""

    records: list[QueueRecord] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    unmapped: list[tuple[int, str]] = field(default_factory=list)  # (record ID, event name)

    def targets(self) -> dict[str, list[int]]:
        """entity → distinct entity ids, each fetched once however many records name it."""
        out: dict[str, list[int]] = {}
        for rec in self.records:
            ids = out.setdefault(rec.entity, [])
            if rec.entity_id not in ids:
                ids.append(rec.entity_id)
        return out

    def record_ids(self) -> list[int]:
        ids = [r.record_id for r in self.records]
        ids += [b.record_id for b in self.bad if b.record_id is not None]
        ids += [record_id for record_id, _ in self.unmapped]
        return ids


def parse_record(raw: Mapping[str, Any], mappings: MappingSet) -> QueueRecord:
    """One ``events[]`` element → a QueueRecord, or RecordError naming what is wrong."""
    record_id = as_int(raw.get("ID"))
    label = f"queue record {raw.get('ID')!r}"
    name = raw.get("EVENT_NAME")
    if record_id is None:
        raise RecordError(
            "queue record without a numeric ID", entity="queue", record_id=None, field="ID"
        )
    if not isinstance(name, str) or not name:
        raise RecordError(
            f"{label} has no EVENT_NAME", entity="queue", record_id=record_id, field="EVENT_NAME"
        )
    found = mappings.by_event(name)
    if found is None:
        raise RecordError(
            f"event {name} is not for a mapped entity",
            entity="queue",
            record_id=record_id,
            field="EVENT_NAME",
        )
    mapping, action = found
    data = raw.get("EVENT_DATA")
    fields = data.get("FIELDS") if isinstance(data, Mapping) else None
    entity_id = as_int(fields.get("ID")) if isinstance(fields, Mapping) else None
    if entity_id is None or entity_id <= 0:
        raise RecordError(
            f"{label} has no entity id in EVENT_DATA.FIELDS.ID",
            entity=mapping.entity,
            record_id=record_id,
            field="EVENT_DATA.FIELDS.ID",
        )
    message_id = raw.get("MESSAGE_ID")
    if not isinstance(message_id, str) or not message_id:
        raise RecordError(
            f"{label} has no MESSAGE_ID",
            entity=mapping.entity,
            record_id=record_id,
            field="MESSAGE_ID",
        )
    extra = raw.get("EVENT_ADDITIONAL")
    user_id = as_int(extra.get("user_id")) if isinstance(extra, Mapping) else None
    return QueueRecord(
        record_id=record_id,
        message_id=message_id,
        event_name=name.upper(),
        entity=mapping.entity,
        action=action,
        entity_id=entity_id,
        user_id=user_id,
        timestamp=str(raw.get("TIMESTAMP_X") or ""),
    )


def plan_batch(events: Iterable[Any], mappings: MappingSet) -> DrainPlan:
    """Sort a drained batch into usable records, bad ones, and events no mapping names
    (an entity whose mapping was removed: those are cleared, never held)."""
    plan = DrainPlan()
    for raw in events:
        if not isinstance(raw, Mapping):
            err = RecordError(
                f"queue record is a {type(raw).__name__}, not an object",
                entity="queue",
                record_id=None,
            )
            plan.bad.append(BadRecord(None, None, err, {"raw": repr(raw)[:500]}))
            continue
        name, record_id = raw.get("EVENT_NAME"), as_int(raw.get("ID"))
        unmapped = isinstance(name, str) and bool(name) and mappings.by_event(name) is None
        if unmapped and record_id is not None:  # no mapping wants it: cleared, not held
            plan.unmapped.append((record_id, str(name).upper()))
            continue
        try:
            plan.records.append(parse_record(raw, mappings))
        except RecordError as err:
            mid = raw.get("MESSAGE_ID")
            plan.bad.append(
                BadRecord(as_int(raw.get("ID")), mid if isinstance(mid, str) else None, err, raw)
            )
    return plan
