"""Apply a window of portal records with a constant number of statements per chunk.

:func:`apply_many` gives the same result as calling :meth:`ErpWriter.apply` for each item
in order, but preloads links, ERP rows, child rows and open conflicts for a chunk of up to
:data:`CHUNK` ids in one query each, merges in Python, and writes with grouped
``executemany`` statements. Rules:

* the same entity id twice: the first item wins (it applies the current state once); the
  later ones get the outcome ``skipped``;
* a record whose values do not convert (:class:`RecordError`) gets the outcome ``error``
  with ``error`` set and writes nothing; the other records are applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection

from connector.adapters.store.bulk_insert import among
from connector.adapters.store.conflict_rows import (
    DELETE_CONFLICT,
    DELETED_FIELD,
    SideTimes,
    conflict_update,
    erp_change_times,
    new_conflict,
    portal_time,
)
from connector.adapters.store.dead_links import drop_dead_links
from connector.adapters.store.erp_tables import MULTI_OWNER, MULTI_TYPE, MULTI_VALUE, MULTI_VALUE_ID
from connector.adapters.store.tables import sync_conflict, sync_link
from connector.core.field_values import erp_canonical
from connector.core.mapping_model import DeletePolicy, EntityMapping
from connector.core.merge import FieldRule, MergeResult, merge_record
from connector.core.multi_merge import ErpValue, child_ops, wanted_from
from connector.errors import RecordError

if TYPE_CHECKING:
    from connector.adapters.store.erp_writer import ApplyOutcome, ErpWriter

CHUNK = 500
Item = tuple[int, Mapping[str, Any] | None, str | None]


@dataclass
class _Upsert:
    index: int
    b24_id: int
    message_id: str | None
    portal_side: dict[str, Any]
    times: SideTimes


def _runs(rows: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows with the same keys: one ``executemany`` each, order kept."""
    run: list[dict[str, Any]] = []
    for row in rows:
        if run and set(run[0]) != set(row):
            yield run
            run = []
        run.append(row)
    if run:
        yield run


def _erp_values(rows: Sequence[Any]) -> list[ErpValue]:
    """Child rows ``(id, owner, value ID, type, value)`` as the merge sees them."""
    return [
        ErpValue(int(r[0]), None if r[2] is None else int(r[2]), (r[3] or "", r[4])) for r in rows
    ]


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def apply_many(
    writer: ErpWriter,
    conn: Connection,
    m: EntityMapping,
    items: Sequence[Item],
    *,
    now: datetime,
    on_progress: Callable[[], None] | None = None,
) -> list[ApplyOutcome]:
    """Apply ``items`` (``(b24_id, record | None, message_id)``) as ``apply`` would, in order."""
    from connector.adapters.store.erp_writer import ApplyOutcome

    outcomes: list[ApplyOutcome | None] = [None] * len(items)
    seen: set[int] = set()
    work: list[int] = []
    for i, (b24_id, _record, _mid) in enumerate(items):
        if b24_id in seen:
            outcomes[i] = ApplyOutcome(m.entity, b24_id, "skipped")
            continue
        seen.add(b24_id)
        work.append(i)
    progress = on_progress
    for chunk in _chunks(work):
        _apply_chunk(writer, conn, m, items, chunk, outcomes, now)
        if progress is not None:
            progress()
            progress = None
    return [o for o in outcomes if o is not None]


def _apply_chunk(
    writer: ErpWriter,
    conn: Connection,
    m: EntityMapping,
    items: Sequence[Item],
    chunk: Sequence[int],
    outcomes: list[ApplyOutcome | None],
    now: datetime,
) -> None:
    from connector.adapters.store.erp_writer import ApplyOutcome

    parent = writer.table(m.table)
    ids = [items[i][0] for i in chunk]
    links = {
        int(r["b24_id"]): r
        for r in conn.execute(
            sa.select(sync_link).where(
                sync_link.c.entity == m.entity, among(conn, sync_link.c.b24_id, ids)
            )
        ).mappings()
    }
    rows = {
        int(r[m.b24_id_column]): r
        for r in conn.execute(
            sa.select(parent).where(among(conn, parent.c[m.b24_id_column], ids))
        ).mappings()
    }
    keys = [r[m.key] for r in rows.values()]
    children: dict[str, dict[Any, list[Any]]] = {}
    for mf in m.multifields:
        t = writer.table(mf.table)
        per_owner: dict[Any, list[Any]] = {}
        if keys:
            for r in conn.execute(
                sa.select(
                    t.c.id, t.c[MULTI_OWNER], t.c[MULTI_VALUE_ID], t.c[MULTI_TYPE], t.c[MULTI_VALUE]
                )
                .where(among(conn, t.c[MULTI_OWNER], keys))
                .order_by(t.c.id)
            ).all():
                per_owner.setdefault(r[1], []).append(r)
        children[mf.table] = per_owner
    open_conflicts: dict[int, Any] = {}
    for cr in conn.execute(
        sa.select(
            sync_conflict.c.id,
            sync_conflict.c.fields,
            sync_conflict.c.message_ids,
            sync_conflict.c.b24_id,
        ).where(
            sync_conflict.c.entity == m.entity,
            among(conn, sync_conflict.c.b24_id, ids),
            sync_conflict.c.status == "open",
        )
    ).all():
        open_conflicts.setdefault(int(cr[3]), cr)

    erp_times = erp_change_times(conn, m.entity, [str(k) for k in keys])
    conflict_upd: list[dict[str, Any]] = []

    # --- deletes ---------------------------------------------------------------------
    deletes: list[int] = []
    for i in chunk:
        b24_id, record, message_id = items[i]
        if record is not None:
            continue
        held = open_conflicts.get(b24_id)
        if held is None:
            deletes.append(i)
            continue
        # delete vs edit: it joins the open conflict; nothing is deleted or dropped
        outcome = ApplyOutcome(m.entity, b24_id, "conflict", conflicts=[DELETED_FIELD])
        outcome.conflict_id = int(held[0])
        times = SideTimes(now, None)
        values = conflict_update(held, DELETE_CONFLICT, message_id, times, now, merge=True)
        if values:
            conflict_upd.append({"_id": held[0], **values})
        outcomes[i] = outcome
    if deletes:
        gone_keys: list[Any] = []
        for i in deletes:
            b24_id = items[i][0]
            outcome = ApplyOutcome(m.entity, b24_id, "unchanged")
            row = rows.get(b24_id)
            marked = m.delete_policy is DeletePolicy.MARK
            if row is not None and (
                m.delete_policy is DeletePolicy.DELETE or (marked and row[m.deleted_column] is None)
            ):
                gone_keys.append(row[m.key])
                outcome.action = "deleted"
            outcomes[i] = outcome
        if gone_keys and m.delete_policy is DeletePolicy.DELETE:
            for mf in m.multifields:
                t = writer.table(mf.table)
                conn.execute(t.delete().where(t.c[MULTI_OWNER].in_(gone_keys)))
            conn.execute(parent.delete().where(parent.c[m.key].in_(gone_keys)))
        elif gone_keys:
            conn.execute(
                parent.update()
                .where(parent.c[m.key].in_(gone_keys))
                .values(**{m.deleted_column: writer._db_value(conn, now)})
            )
        conn.execute(
            sync_link.update()
            .where(
                sync_link.c.entity == m.entity,
                sync_link.c.b24_id.in_([items[i][0] for i in deletes]),
                sync_link.c.deleted.is_(False),
            )
            .values(deleted=True, updated_at=now)
        )

    # --- convert ---------------------------------------------------------------------
    rules = {fm.portal: FieldRule(fm.direction, fm.conflict) for fm in m.fields}
    rules |= {mf.portal: FieldRule(mf.direction, mf.conflict) for mf in m.multifields}
    plans: list[tuple[_Upsert, Any, Any, dict[str, Any] | None, MergeResult]] = []
    for i in chunk:
        b24_id, record, message_id = items[i]
        if record is None:
            continue
        link = links.get(b24_id)
        try:
            side = writer._portal_side(m, b24_id, record)
            base = writer._base(m, link["base"] if link else None)
        except RecordError as err:
            outcomes[i] = ApplyOutcome(m.entity, b24_id, "error", error=err)
            continue
        row = rows.get(b24_id)
        try:
            erp_plain = (
                {
                    fm.portal: erp_canonical(
                        fm, row[fm.column], entity=m.entity, record_id=row[m.key]
                    )
                    for fm in m.fields
                }
                if row is not None
                else None
            )
        except RecordError as err:
            outcomes[i] = ApplyOutcome(m.entity, b24_id, "error", error=err)
            continue
        portal_cmp = {
            k: (writer._multi_key(v) if isinstance(v, dict) else v) for k, v in side.items()
        }
        erp_cmp: dict[str, Any] | None = None
        multi: dict[str, Any] = {}
        if row is not None:
            erp_cmp = dict(erp_plain or {})
            for mf in m.multifields:
                existing = _erp_values(children[mf.table].get(row[m.key], []))
                erp_cmp[mf.portal] = tuple(sorted(v.pair for v in existing))
                multi[mf.portal] = (side.get(mf.portal) or {}, existing)
        times = SideTimes(
            portal_time(record), erp_times.get(str(row[m.key])) if row is not None else None
        )
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
        plans.append((_Upsert(i, b24_id, message_id, side, times), link, row, base, result))

    # --- parent rows -----------------------------------------------------------------
    new_rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    erp_keys: dict[int, Any] = {}
    for up, _link, row, _base, result in plans:
        values = {
            fm.column: writer._db_value(conn, result.to_erp[fm.portal])
            for fm in m.fields
            if fm.portal in result.to_erp
        }
        if (
            row is not None
            and m.delete_policy is DeletePolicy.MARK
            and row.get(m.deleted_column) is not None
        ):
            values[m.deleted_column] = None
        outcome = ApplyOutcome(m.entity, up.b24_id, "unchanged")
        if row is None:
            new_rows.append({m.b24_id_column: up.b24_id, **values})
            outcome.action = "inserted"
        else:
            erp_keys[up.b24_id] = row[m.key]
            if values:
                updates.append({"_key": row[m.key], **values})
                outcome.action = "updated"
        outcomes[up.index] = outcome
    reserved = writer.bulk.reserve_keys(conn, parent, m.key, len(new_rows))
    if reserved is not None:  # PostgreSQL: the keys are known before the rows are written
        for new, key in zip(new_rows, reserved, strict=True):
            new[m.key] = key
            erp_keys[new[m.b24_id_column]] = key
    for run in _runs(new_rows):
        writer.bulk.rows(conn, parent, run)
    writer.table_stats.inserted(
        conn, [m.table, "sync_link", *(mf.table for mf in m.multifields)], len(new_rows)
    )
    if new_rows and reserved is None:
        new_ids = [n[m.b24_id_column] for n in new_rows]
        for part in _chunks(new_ids):
            for kr in conn.execute(
                sa.select(parent.c[m.b24_id_column], parent.c[m.key]).where(
                    parent.c[m.b24_id_column].in_(part)
                )
            ).all():
                erp_keys[int(kr[0])] = kr[1]
    by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
    for upd in updates:  # no generated keys here, so any order will do: one group per shape
        by_columns.setdefault(frozenset(upd), []).append(upd)
    for run in by_columns.values():
        cols = [c for c in run[0] if c != "_key"]
        stmt = (
            parent.update()
            .where(parent.c[m.key] == sa.bindparam("_key"))
            .values({c: sa.bindparam(f"_v_{c}") for c in cols})
        )
        conn.execute(stmt, [{"_key": r["_key"], **{f"_v_{c}": r[c] for c in cols}} for r in run])

    # --- child rows ------------------------------------------------------------------
    for mf in m.multifields:
        t = writer.table(mf.table)
        gone: list[Any] = []
        changed: list[dict[str, Any]] = []
        added: list[dict[str, Any]] = []
        for up, _link, row, _base, result in plans:
            if mf.portal not in result.to_erp or mf.portal not in up.portal_side:
                continue
            wanted: Mapping[int, tuple[str, str]] = up.portal_side[mf.portal]
            keep: frozenset[int] = frozenset()
            if mf.portal in result.multi:  # merged value by value: ERP additions stay
                wanted, keep = wanted_from(result.multi[mf.portal])
            owner = erp_keys[up.b24_id]
            existing_rows = children[mf.table].get(owner, []) if row is not None else []
            ops = child_ops(_erp_values(existing_rows), wanted, keep)
            gone += ops.gone
            changed += [{"_id": rid, "_t": t, "_v": v} for rid, (t, v) in ops.changed]
            added += [
                {MULTI_OWNER: owner, MULTI_VALUE_ID: vid, MULTI_TYPE: t, MULTI_VALUE: v}
                for vid, (t, v) in ops.added
            ]
            touched = outcomes[up.index]
            assert touched is not None
            touched.action = "inserted" if row is None else "updated"
        for part in _chunks(gone):
            conn.execute(t.delete().where(t.c.id.in_(part)))
        if changed:
            conn.execute(
                t.update()
                .where(t.c.id == sa.bindparam("_id"))
                .values({MULTI_TYPE: sa.bindparam("_t"), MULTI_VALUE: sa.bindparam("_v")}),
                changed,
            )
        writer.bulk.rows(conn, t, added)

    # --- conflicts and links -----------------------------------------------------------
    link_new: list[dict[str, Any]] = []
    link_upd: list[dict[str, Any]] = []
    for up, link, _row, base, result in plans:
        done = outcomes[up.index]
        assert done is not None
        erp_key = str(erp_keys[up.b24_id])
        done.erp_key = erp_key
        done.pending_push = dict(result.to_portal)
        new_base = writer._new_base(m, base, result)
        if result.has_conflict:
            done.action = "conflict"
            done.conflicts = sorted(result.conflicts)
            fields = writer._conflict_fields(result)
            open_row = open_conflicts.get(up.b24_id)
            if open_row is not None:
                values = conflict_update(open_row, fields, up.message_id, up.times, now)
                if values:
                    conflict_upd.append({"_id": open_row[0], **values})
                done.conflict_id = int(open_row[0])
            else:
                inserted = conn.execute(
                    sync_conflict.insert().values(
                        **new_conflict(
                            m.entity, up.b24_id, erp_key, fields, up.message_id, up.times, now
                        )
                    )
                ).inserted_primary_key
                assert inserted is not None
                done.conflict_id = int(inserted[0])
        if link is None:
            link_new.append(
                {
                    "entity": m.entity,
                    "b24_id": up.b24_id,
                    "erp_key": erp_key,
                    "base": new_base,
                    "deleted": False,
                    "updated_at": now,
                }
            )
        elif link["base"] != new_base or link["erp_key"] != erp_key or link["deleted"]:
            link_upd.append({"_id": link["id"], "_b": new_base, "_k": erp_key})
    for upd in conflict_upd:  # rare: one statement each keeps the shapes simple
        conn.execute(
            sync_conflict.update()
            .where(sync_conflict.c.id == upd["_id"])
            .values(**{k: v for k, v in upd.items() if k != "_id"})
        )
    if link_new:
        drop_dead_links(conn, m.entity, {str(n["erp_key"]) for n in link_new})
        writer.bulk.rows(conn, sync_link, link_new)
    if link_upd:
        conn.execute(
            sync_link.update()
            .where(sync_link.c.id == sa.bindparam("_id"))
            .values(
                base=sa.bindparam("_b"), erp_key=sa.bindparam("_k"), deleted=False, updated_at=now
            ),
            link_upd,
        )
