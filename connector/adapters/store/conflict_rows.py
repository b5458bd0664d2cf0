"""Conflict rows (``sync_conflict``): one per record, opened and brought up to date.

Shared by both apply paths (:mod:`connector.adapters.store.erp_writer` per record,
:mod:`connector.adapters.store.erp_bulk` per window): the row a new conflict gets, what
changes when an open one is seen again (fields, every held MESSAGE_ID, last seen, each
side's modification time), and where those times come from.

After that, the rows as the operator and the holds see them: one conflict or a listing
(``conflicts list|show``, the resolver), an operator's step written on its row, the
MESSAGE_IDs open conflicts hold, and the closed conflicts whose held records are not
released yet (``Holds.release_resolved``), marked released once they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Select

from connector.adapters.store.bulk_insert import among_bound, key_list
from connector.adapters.store.tables import sync_conflict, sync_outbox

DELETED_FIELD = "__record__"
"""The pseudo-field of a delete-vs-edit conflict: the portal deleted a record in conflict."""
DELETE_CONFLICT = {DELETED_FIELD: {"base": "present", "portal": "deleted", "erp": "present"}}


@dataclass
class SideTimes:
    """When each side last changed the record (``None``: not known)."""

    portal: datetime | None
    erp: datetime | None

    def as_json(self) -> dict[str, str | None]:
        return {
            "portal": self.portal.isoformat() if self.portal else None,
            "erp": self.erp.isoformat() if self.erp else None,
        }


def portal_time(record: Mapping[str, Any] | None) -> datetime | None:
    """The record's ``DATE_MODIFY`` (ISO 8601 with an offset), or None."""
    raw = record.get("DATE_MODIFY") if record else None
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def erp_change_times(conn: Connection, entity: str, keys: Sequence[str]) -> dict[str, datetime]:
    """When the ERP last changed each record, from its unpushed outbox rows."""
    if not keys:
        return {}
    form, listed = key_list(conn, keys)
    rows = conn.execute(_change_times(form), {"entity": entity, "keys": listed}).all()
    out: dict[str, datetime] = {}
    for key, value in rows:
        if isinstance(value, datetime):
            out[str(key)] = value if value.tzinfo else value.replace(tzinfo=UTC)
    return out


def in_flight_sent(conn: Connection, entity: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What an interrupted push already sent for each record (``sync_outbox.sent`` of
    its rows not done, in the stored-base form; later rows win a field).

    A push whose portal write landed but whose local commit was lost (a kill between the
    two) leaves the portal holding our value while the link's base still has the old one:
    a portal value equal to what we sent is our own write, for the drain as for the push.
    """
    if not keys:
        return {}
    form, listed = key_list(conn, keys)
    rows = conn.execute(_in_flight(form), {"entity": entity, "keys": listed}).all()
    out: dict[str, dict[str, Any]] = {}
    for key, sent in rows:
        if isinstance(sent, str):  # a driver that hands JSON back as text
            sent = json.loads(sent)
        if isinstance(sent, dict):
            out.setdefault(str(key), {}).update(sent)
    return out


@lru_cache(maxsize=8)  # built once per form (see among_bound), not once per chunk
def _change_times(form: str) -> Select[Any]:
    return (
        sa.select(sync_outbox.c.erp_key, sa.func.max(sync_outbox.c.created_at))
        .where(
            sync_outbox.c.entity == sa.bindparam("entity"),
            sync_outbox.c.status.in_(["pending", "held"]),
            among_bound(form, sync_outbox.c.erp_key),
        )
        .group_by(sync_outbox.c.erp_key)
    )


@lru_cache(maxsize=8)
def _in_flight(form: str) -> Select[Any]:
    return (
        sa.select(sync_outbox.c.erp_key, sync_outbox.c.sent)
        .where(
            sync_outbox.c.entity == sa.bindparam("entity"),
            sync_outbox.c.status != "done",
            sync_outbox.c.sent.is_not(None),
            among_bound(form, sync_outbox.c.erp_key),
        )
        .order_by(sync_outbox.c.id)
    )


def new_conflict(
    entity: str,
    b24_id: int,
    erp_key: str | None,
    fields: dict[str, Any],
    message_id: str | None,
    times: SideTimes,
    now: datetime,
) -> dict[str, Any]:
    """The row of a newly opened conflict."""
    return {
        "entity": entity,
        "b24_id": b24_id,
        "erp_key": erp_key,
        "fields": fields,
        "message_id": message_id,
        "message_ids": [message_id] if message_id else [],
        "times": times.as_json(),
        "status": "open",
        "created_at": now,
        "last_seen_at": now,
    }


def conflict_update(
    open_row: Any,
    fields: dict[str, Any],
    message_id: str | None,
    times: SideTimes,
    now: datetime,
    *,
    merge: bool = False,
) -> dict[str, Any]:
    """What changes on an open conflict seen again (empty: nothing new)."""
    old_fields = open_row[1] or {}
    new_fields = {**old_fields, **fields} if merge else fields
    held = list(open_row[2] or [])
    if message_id and message_id not in held:
        held.append(message_id)
    if new_fields == old_fields and held == list(open_row[2] or []):
        return {}
    return {
        "fields": new_fields,
        "message_id": message_id,
        "message_ids": held,
        "times": times.as_json(),
        "last_seen_at": now,
    }


# --- the rows as the operator and the holds see them ----------------------------------


def conflict_row(conn: Connection, conflict_id: int) -> dict[str, Any] | None:
    """Every column of conflict ``conflict_id``, or None when there is none."""
    row = (
        conn.execute(sa.select(sync_conflict).where(sync_conflict.c.id == conflict_id))
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def conflict_list(
    conn: Connection, *, entity: str | None = None, everything: bool = False
) -> list[dict[str, Any]]:
    """Conflicts oldest first: open ones (every one with ``everything``), of ``entity``
    only when given."""
    query = sa.select(sync_conflict).order_by(sync_conflict.c.id)
    if not everything:
        query = query.where(sync_conflict.c.status == "open")
    if entity:
        query = query.where(sync_conflict.c.entity == entity)
    return [dict(r) for r in conn.execute(query).mappings()]


def update_conflict(conn: Connection, conflict_id: int, values: Mapping[str, Any]) -> None:
    """Write ``values`` on conflict ``conflict_id`` (an operator's resolution step)."""
    conn.execute(sync_conflict.update().where(sync_conflict.c.id == conflict_id).values(**values))


def open_conflict_message_ids(conn: Connection) -> set[str]:
    """The MESSAGE_IDs open conflicts hold in the portal (every one they collected)."""
    out: set[str] = set()
    for mids, mid in conn.execute(
        sa.select(sync_conflict.c.message_ids, sync_conflict.c.message_id).where(
            sync_conflict.c.status == "open"
        )
    ).all():
        out |= {m for m in (mids or []) if isinstance(m, str)}
        if mid:
            out.add(mid)
    return out


def unreleased_closed_conflicts(
    conn: Connection,
) -> list[tuple[int, list[Any] | None, str | None]]:
    """Conflicts resolved or ignored whose held records are not released yet:
    (id, message_ids, message_id) each."""
    rows = conn.execute(
        sa.select(
            sync_conflict.c.id, sync_conflict.c.message_ids, sync_conflict.c.message_id
        ).where(
            sync_conflict.c.status != "open",
            sync_conflict.c.released_at.is_(None),
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def mark_conflicts_released(conn: Connection, conflict_ids: Sequence[int], now: datetime) -> None:
    """Their held records were drained again: stamp ``released_at``."""
    conn.execute(
        sync_conflict.update()
        .where(sync_conflict.c.id.in_(list(conflict_ids)))
        .values(released_at=now)
    )
