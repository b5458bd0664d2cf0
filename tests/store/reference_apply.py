"""The single-record apply, kept as the oracle for ``apply_many``
(``test_erp_writer_bulk.py`` checks the bulk path against it, record by record).

Production has one apply path, ``ErpWriter.apply_many`` (``adapters/store/erp_bulk.py``);
``ErpWriter.apply`` is a batch of one. This is the straightforward statement-per-row
version of the same rules, which the bulk one must agree with on every backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from connector.adapters.store.apply_outcome import ApplyOutcome
from connector.adapters.store.conflict_rows import (
    DELETE_CONFLICT,
    DELETED_FIELD,
    SideTimes,
    conflict_update,
    erp_change_times,
    in_flight_sent,
    new_conflict,
    portal_time,
)
from connector.adapters.store.dead_links import drop_dead_links
from connector.adapters.store.erp_tables import MULTI_OWNER, MULTI_TYPE, MULTI_VALUE, MULTI_VALUE_ID
from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.tables import sync_conflict, sync_link
from connector.core.field_values import erp_canonical
from connector.core.mapping_model import DeletePolicy, EntityMapping
from connector.core.merge import FieldRule, merge_record
from connector.core.multi_merge import ErpValue, child_ops, wanted_from

_UNSET = object()


def apply_one(
    writer: ErpWriter,
    conn: Connection,
    m: EntityMapping,
    b24_id: int,
    record: Mapping[str, Any] | None,
    *,
    message_id: str | None,
    now: datetime,
) -> ApplyOutcome:
    """Apply the portal's state of one record (``None``: it is gone from the portal)."""
    if record is None:
        return _apply_delete(writer, conn, m, b24_id, message_id, now)
    parent = writer.table(m.table)
    link = (
        conn.execute(
            sa.select(sync_link).where(sync_link.c.entity == m.entity, sync_link.c.b24_id == b24_id)
        )
        .mappings()
        .first()
    )
    row = (
        conn.execute(sa.select(parent).where(parent.c[m.b24_id_column] == b24_id))
        .mappings()
        .first()
    )
    portal_side = writer._portal_side(m, b24_id, record)
    portal_multi = {k: v for k, v in portal_side.items() if isinstance(v, dict)}
    portal_cmp = {
        k: (writer._multi_key(v) if isinstance(v, dict) else v) for k, v in portal_side.items()
    }
    rules = {fm.portal: FieldRule(fm.direction, fm.conflict) for fm in m.fields}
    rules |= {mf.portal: FieldRule(mf.direction, mf.conflict) for mf in m.multifields}
    erp_cmp: dict[str, Any] | None = None
    multi: dict[str, Any] = {}
    if row is not None:
        erp_cmp = {
            fm.portal: erp_canonical(fm, row[fm.column], entity=m.entity, record_id=row[m.key])
            for fm in m.fields
        }
        for mf in m.multifields:
            rows = _read_multi(writer, conn, mf.table, row[m.key])
            erp_cmp[mf.portal] = tuple(sorted(r.pair for r in rows))
            multi[mf.portal] = (portal_multi.get(mf.portal) or {}, rows)
    base = writer._base(m, link["base"] if link else None)
    if row is not None and base is not None:  # what an interrupted push sent is ours
        sent = in_flight_sent(conn, m.entity, [str(row[m.key])]).get(str(row[m.key]))
        ours = writer._base(m, sent) or {}
        base = base | {c: v for c, v in ours.items() if portal_cmp.get(c, _UNSET) == v}
    times = SideTimes(portal_time(record), None)
    if row is not None:
        times.erp = erp_change_times(conn, m.entity, [str(row[m.key])]).get(str(row[m.key]))
    result = merge_record(
        rules,
        base,
        portal_cmp,
        erp_cmp,
        portal_modified=times.portal,
        erp_modified=times.erp,
        skew=writer.skew,
        multi=multi,
    )
    outcome = ApplyOutcome(m.entity, b24_id, "unchanged")
    values = {
        fm.column: writer._db_value(conn, result.to_erp[fm.portal])
        for fm in m.fields
        if fm.portal in result.to_erp
    }
    revive = (
        row is not None
        and m.delete_policy is DeletePolicy.MARK
        and row.get(m.deleted_column) is not None
    )
    if revive:
        values[m.deleted_column] = None
    if row is None:
        key = conn.execute(
            parent.insert().values(**{m.b24_id_column: b24_id}, **values)
        ).inserted_primary_key
        assert key is not None
        erp_key = key[0]
        outcome.action = "inserted"
    else:
        erp_key = row[m.key]
        if values:
            conn.execute(parent.update().where(parent.c[m.key] == erp_key).values(**values))
            outcome.action = "updated"
    for mf in m.multifields:
        if mf.portal in result.to_erp and mf.portal in portal_multi:
            wanted, keep = portal_multi[mf.portal], frozenset[int]()
            if mf.portal in result.multi:
                wanted, keep = wanted_from(result.multi[mf.portal])
            _write_multi(writer, conn, mf.table, erp_key, wanted, keep)
            outcome.action = "inserted" if row is None else "updated"
    outcome.pending_push = dict(result.to_portal)
    new_base = writer._new_base(m, base, result)
    if result.has_conflict:
        outcome.action = "conflict"
        outcome.conflicts = sorted(result.conflicts)
        outcome.conflict_id = _record_conflict(
            writer,
            conn,
            m,
            b24_id,
            str(erp_key),
            writer._conflict_fields(result),
            message_id,
            now,
            times,
        )
    _write_link(writer, conn, m, b24_id, str(erp_key), link, new_base, now)
    return outcome


def _read_multi(writer: ErpWriter, conn: Connection, table: str, owner: Any) -> list[ErpValue]:
    t = writer.table(table)
    rows = conn.execute(
        sa.select(t.c.id, t.c[MULTI_VALUE_ID], t.c[MULTI_TYPE], t.c[MULTI_VALUE])
        .where(t.c[MULTI_OWNER] == owner)
        .order_by(t.c.id)
    ).all()
    return [
        ErpValue(int(r[0]), None if r[1] is None else int(r[1]), (r[2] or "", r[3])) for r in rows
    ]


def _write_multi(
    writer: ErpWriter,
    conn: Connection,
    table: str,
    owner: Any,
    wanted: Mapping[int, tuple[str, str]],
    keep: frozenset[int],
) -> None:
    t = writer.table(table)
    ops = child_ops(_read_multi(writer, conn, table, owner), wanted, keep)
    if ops.gone:
        conn.execute(t.delete().where(t.c.id.in_(ops.gone)))
    for row_id, (vtype, value) in ops.changed:
        conn.execute(
            t.update().where(t.c.id == row_id).values(**{MULTI_TYPE: vtype, MULTI_VALUE: value})
        )
    for value_id, (vtype, value) in ops.added:
        conn.execute(
            t.insert().values(
                **{
                    MULTI_OWNER: owner,
                    MULTI_VALUE_ID: value_id,
                    MULTI_TYPE: vtype,
                    MULTI_VALUE: value,
                }
            )
        )


def _write_link(
    writer: ErpWriter,
    conn: Connection,
    m: EntityMapping,
    b24_id: int,
    erp_key: str,
    link: Any,
    base: dict[str, Any],
    now: datetime,
) -> None:
    if link is None:
        drop_dead_links(conn, m.entity, [erp_key])
        conn.execute(
            sync_link.insert().values(
                entity=m.entity,
                b24_id=b24_id,
                erp_key=erp_key,
                base=base,
                deleted=False,
                updated_at=now,
            )
        )
    elif link["base"] != base or link["erp_key"] != erp_key or link["deleted"]:
        conn.execute(
            sync_link.update()
            .where(sync_link.c.id == link["id"])
            .values(base=base, erp_key=erp_key, deleted=False, updated_at=now)
        )


def _record_conflict(
    writer: ErpWriter,
    conn: Connection,
    m: EntityMapping,
    b24_id: int,
    erp_key: str | None,
    fields: dict[str, Any],
    message_id: str | None,
    now: datetime,
    times: SideTimes,
    *,
    merge_fields: bool = False,
) -> int:
    """Open a conflict for the record, or bring its open one up to date (one per record)."""
    open_row = conn.execute(
        sa.select(sync_conflict.c.id, sync_conflict.c.fields, sync_conflict.c.message_ids).where(
            sync_conflict.c.entity == m.entity,
            sync_conflict.c.b24_id == b24_id,
            sync_conflict.c.status == "open",
        )
    ).first()
    if open_row is not None:
        values = conflict_update(open_row, fields, message_id, times, now, merge=merge_fields)
        if values:
            conn.execute(
                sync_conflict.update().where(sync_conflict.c.id == open_row[0]).values(**values)
            )
        return int(open_row[0])
    inserted = conn.execute(
        sync_conflict.insert().values(
            **new_conflict(m.entity, b24_id, erp_key, fields, message_id, times, now)
        )
    ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def _apply_delete(
    writer: ErpWriter,
    conn: Connection,
    m: EntityMapping,
    b24_id: int,
    message_id: str | None,
    now: datetime,
) -> ApplyOutcome:
    parent = writer.table(m.table)
    row = (
        conn.execute(sa.select(parent).where(parent.c[m.b24_id_column] == b24_id))
        .mappings()
        .first()
    )
    outcome = ApplyOutcome(m.entity, b24_id, "unchanged")
    held = conn.execute(
        sa.select(sync_conflict.c.id).where(
            sync_conflict.c.entity == m.entity,
            sync_conflict.c.b24_id == b24_id,
            sync_conflict.c.status == "open",
        )
    ).first()
    if held is not None:  # delete vs edit: the operator decides, nothing is dropped
        outcome.action = "conflict"
        outcome.conflicts = [DELETED_FIELD]
        outcome.conflict_id = _record_conflict(
            writer,
            conn,
            m,
            b24_id,
            None,
            DELETE_CONFLICT,
            message_id,
            now,
            SideTimes(now, None),
            merge_fields=True,
        )
        return outcome
    if row is not None:
        if m.delete_policy is DeletePolicy.DELETE:
            for mf in m.multifields:
                t = writer.table(mf.table)
                conn.execute(t.delete().where(t.c[MULTI_OWNER] == row[m.key]))
            conn.execute(parent.delete().where(parent.c[m.key] == row[m.key]))
            outcome.action = "deleted"
        elif m.delete_policy is DeletePolicy.MARK and row[m.deleted_column] is None:
            conn.execute(
                parent.update()
                .where(parent.c[m.key] == row[m.key])
                .values(**{m.deleted_column: writer._db_value(conn, now)})
            )
            outcome.action = "deleted"
    conn.execute(
        sync_link.update()
        .where(
            sync_link.c.entity == m.entity,
            sync_link.c.b24_id == b24_id,
            sync_link.c.deleted.is_(False),
        )
        .values(deleted=True, updated_at=now)
    )
    return outcome
