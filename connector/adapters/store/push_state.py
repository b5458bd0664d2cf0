"""The ERP side of a push: read the records the outbox names, write back what the portal said.

:func:`load_records` reads, for a set of ERP keys of one mapping, the ERP row, its
multi-field child rows, the ``sync_link`` row and whether a conflict is open — a few
statements per call, whatever the number of keys. The write-back helpers run inside the
pusher's commit transaction (:func:`connector.adapters.store.database.write_transaction`,
so none of it reaches the outbox again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from connector.adapters.store.dead_links import drop_dead_links
from connector.adapters.store.erp_tables import MULTI_OWNER, MULTI_TYPE, MULTI_VALUE, MULTI_VALUE_ID
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.tables import sync_conflict, sync_link
from connector.core.field_values import erp_canonical
from connector.core.mapping_model import EntityMapping
from connector.core.merge import MergeResult
from connector.core.push_commands import ChildRow


@dataclass
class LocalRecord:
    """One ERP record as the pusher finds it (``row`` None: the ERP deleted it)."""

    erp_key: str
    row: dict[str, Any] | None
    children: dict[str, list[ChildRow]] = field(default_factory=dict)  # by portal code
    link: dict[str, Any] | None = None
    conflict_open: bool = False

    @property
    def b24_id(self) -> int | None:
        if self.row is not None and self.row.get("_b24_id") is not None:
            return int(self.row["_b24_id"])
        if self.link is not None and self.link.get("b24_id") is not None:
            return int(self.link["b24_id"])
        return None


def _key_value(m: EntityMapping, writer: ErpWriter, key: str) -> Any:
    column = writer.table(m.table).c[m.key]
    try:
        python_type = column.type.python_type
    except NotImplementedError:  # pragma: no cover - every key type we build has one
        return key
    if python_type is int:
        return int(key) if key.lstrip("-").isdigit() else None
    return key


def load_records(
    conn: Connection, writer: ErpWriter, m: EntityMapping, keys: Sequence[str]
) -> dict[str, LocalRecord]:
    parent = writer.table(m.table)
    typed = {k: _key_value(m, writer, k) for k in keys}
    wanted = [v for v in typed.values() if v is not None]
    rows: dict[str, dict[str, Any]] = {}
    if wanted:
        for r in conn.execute(sa.select(parent).where(parent.c[m.key].in_(wanted))).mappings():
            row = dict(r)
            row["_b24_id"] = row.get(m.b24_id_column)
            rows[str(row[m.key])] = row
    children: dict[str, dict[str, list[ChildRow]]] = {k: {} for k in keys}
    for mf in m.multifields:
        t = writer.table(mf.table)
        if not wanted:
            break
        for c in conn.execute(
            sa.select(
                t.c.id, t.c[MULTI_OWNER], t.c[MULTI_VALUE_ID], t.c[MULTI_TYPE], t.c[MULTI_VALUE]
            )
            .where(t.c[MULTI_OWNER].in_(wanted))
            .order_by(t.c.id)
        ).all():
            owner = str(c[1])
            if owner in children:
                children[owner].setdefault(mf.portal, []).append(
                    ChildRow(int(c[0]), None if c[2] is None else int(c[2]), c[3] or "", c[4])
                )
    links = {
        str(r["erp_key"]): dict(r)
        for r in conn.execute(
            sa.select(sync_link).where(
                sync_link.c.entity == m.entity, sync_link.c.erp_key.in_(list(keys))
            )
        ).mappings()
    }
    b24_ids = [int(r["_b24_id"]) for r in rows.values() if r["_b24_id"] is not None]
    b24_ids += [int(ln["b24_id"]) for ln in links.values() if ln["b24_id"] is not None]
    conflicted: set[int] = set()
    if b24_ids:
        conflicted = {
            int(v)
            for v in conn.execute(
                sa.select(sync_conflict.c.b24_id).where(
                    sync_conflict.c.entity == m.entity,
                    sync_conflict.c.status == "open",
                    sync_conflict.c.b24_id.in_(b24_ids),
                )
            ).scalars()
            if v is not None
        }
    out: dict[str, LocalRecord] = {}
    for key in keys:
        record = LocalRecord(key, rows.get(key), children.get(key, {}), links.get(key))
        record.conflict_open = record.b24_id is not None and record.b24_id in conflicted
        out[key] = record
    return out


def erp_values(m: EntityMapping, record: LocalRecord) -> dict[str, Any]:
    """The ERP row in merge form: canonical field values and multi-fields as value pairs."""
    assert record.row is not None
    values: dict[str, Any] = {
        fm.portal: erp_canonical(
            fm, record.row[fm.column], entity=m.entity, record_id=record.row[m.key]
        )
        for fm in m.fields
    }
    for mf in m.multifields:
        rows = record.children.get(mf.portal, [])
        values[mf.portal] = tuple(sorted((r.value_type, r.value) for r in rows))
    return values


def link_new_record(
    conn: Connection,
    writer: ErpWriter,
    m: EntityMapping,
    record: LocalRecord,
    b24_id: int,
    base: Mapping[str, Any],
    now: datetime,
) -> None:
    """A record the portal now knows: its ``b24_id`` on the ERP row, a link with ``base``."""
    parent = writer.table(m.table)
    assert record.row is not None
    conn.execute(
        parent.update()
        .where(parent.c[m.key] == record.row[m.key], parent.c[m.b24_id_column].is_(None))
        .values(**{m.b24_id_column: b24_id})
    )
    stored = writer._new_base(m, None, MergeResult(agreed=dict(base)))
    if record.link is None:
        drop_dead_links(conn, m.entity, [str(record.erp_key)])
        conn.execute(
            sync_link.insert().values(
                entity=m.entity,
                b24_id=b24_id,
                erp_key=record.erp_key,
                base=stored,
                deleted=False,
                updated_at=now,
            )
        )
    else:
        conn.execute(
            sync_link.update()
            .where(sync_link.c.id == record.link["id"])
            .values(b24_id=b24_id, base=stored, deleted=False, updated_at=now)
        )


def rebase_fields(
    conn: Connection,
    writer: ErpWriter,
    m: EntityMapping,
    entity_b24_id: int,
    pushed: Mapping[str, Any],
    now: datetime,
) -> None:
    """The pushed fields are agreed now: set them in the link's base (read in this txn)."""
    link = (
        conn.execute(
            sa.select(sync_link.c.id, sync_link.c.base).where(
                sync_link.c.entity == m.entity, sync_link.c.b24_id == entity_b24_id
            )
        )
        .mappings()
        .first()
    )
    if link is None:
        return
    old = writer._base(m, link["base"])
    stored = writer._new_base(m, old, MergeResult(agreed=dict(pushed)))
    conn.execute(
        sync_link.update().where(sync_link.c.id == link["id"]).values(base=stored, updated_at=now)
    )


def set_value_ids(
    conn: Connection, writer: ErpWriter, table: str, found: Mapping[int, int]
) -> None:
    """Store the portal's value IDs on child rows (``{row_id: value_id}``)."""
    if not found:
        return
    t = writer.table(table)
    conn.execute(
        t.update()
        .where(t.c.id == sa.bindparam("_id"))
        .values({MULTI_VALUE_ID: sa.bindparam("_v")}),
        [{"_id": row_id, "_v": vid} for row_id, vid in found.items()],
    )


def mark_link_deleted(conn: Connection, m: EntityMapping, erp_key: str, now: datetime) -> None:
    conn.execute(
        sync_link.update()
        .where(sync_link.c.entity == m.entity, sync_link.c.erp_key == erp_key)
        .values(deleted=True, updated_at=now)
    )
