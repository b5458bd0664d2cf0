"""Apply a window of portal records with a constant number of statements per chunk.

:func:`apply_many` gives the same result as calling :meth:`ErpWriter.apply` for each item
in order, but preloads links, ERP rows, child rows and open conflicts for a chunk of up to
:data:`CHUNK` ids in one query each, merges in Python (``erp_plan``) and writes with
grouped statements: ``COPY`` or ``executemany`` for new rows (the links' from a generator,
so that on PostgreSQL each base is built while the rows before it are written). Rules:

* the same entity id twice: the first item wins (it applies the current state once); the
  later ones get the outcome ``skipped``;
* a record whose values do not convert (:class:`RecordError`) gets the outcome ``error``
  with ``error`` set and writes nothing; the other records are applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import Connection, Table

from connector.adapters.store.apply_outcome import ApplyOutcome
from connector.adapters.store.bulk_insert import BulkInsert, among
from connector.adapters.store.conflict_rows import conflict_update, new_conflict
from connector.adapters.store.dead_links import drop_dead_links
from connector.adapters.store.erp_deletes import apply_deletes
from connector.adapters.store.erp_plan import ChunkPlan, Item, Upsert, erp_values
from connector.adapters.store.erp_preload import preload
from connector.adapters.store.erp_tables import MULTI_OWNER, MULTI_TYPE, MULTI_VALUE, MULTI_VALUE_ID
from connector.adapters.store.record_forms import conflict_fields, new_base
from connector.adapters.store.table_stats import TableStats
from connector.adapters.store.tables import sync_conflict, sync_link
from connector.core.mapping_model import EntityMapping
from connector.core.merge import MergeResult
from connector.core.multi_merge import child_ops, wanted_from


class Writer(Protocol):
    """What the apply needs from ``ErpWriter``: its tables and its per-database helpers."""

    skew: timedelta
    table_stats: TableStats
    bulk: BulkInsert

    def table(self, name: str) -> Table: ...


CHUNK = 500
__all__ = ["CHUNK", "Item", "Writer", "apply_many"]


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def apply_many(
    writer: Writer,
    conn: Connection,
    m: EntityMapping,
    items: Sequence[Item],
    *,
    now: datetime,
    on_progress: Callable[[], None] | None = None,
) -> list[ApplyOutcome]:
    """Apply ``items`` (``(b24_id, record | None, message_id)``) as ``apply`` would, in order."""
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
    writer: Writer,
    conn: Connection,
    m: EntityMapping,
    items: Sequence[Item],
    chunk: Sequence[int],
    outcomes: list[ApplyOutcome | None],
    now: datetime,
) -> None:
    parent = writer.table(m.table)
    ids = [items[i][0] for i in chunk]
    known = preload(conn, m, parent, [writer.table(mf.table) for mf in m.multifields], ids)
    children, open_conflicts = known.children, known.open_conflicts
    conflict_upd: list[dict[str, Any]] = []

    # --- deletes ---------------------------------------------------------------------
    deletes = [i for i in chunk if items[i][1] is None]
    removed = [(items[i][0], items[i][2]) for i in deletes]
    deleted, held = apply_deletes(writer, conn, m, removed, known, now)
    for i, outcome in zip(deletes, deleted, strict=True):
        outcomes[i] = outcome
    conflict_upd += held

    # --- convert, merge, parent rows ---------------------------------------------------
    plan = ChunkPlan(
        m,
        items,
        chunk,
        known,
        outcomes,
        skew=writer.skew,
        naive_times=conn.dialect.name != "postgresql",  # db_value's test, once per chunk
    )
    new_rows = plan.merge()
    plans, updates, erp_keys = plan.plans, plan.updates, plan.erp_keys
    reserved = writer.bulk.reserve_keys(conn, parent, m.key, len(new_rows))
    if reserved is not None:  # PostgreSQL: the keys are known before the rows are written
        for new, key in zip(new_rows, reserved, strict=True):
            new[m.key] = key
            erp_keys[new[m.b24_id_column]] = key
    for _columns, shaped in groupby(new_rows, key=dict.keys):  # one COPY per shape, in order
        writer.bulk.rows(conn, parent, shaped)
    writer.table_stats.inserted(
        conn, [m.table, "sync_link", *(mf.table for mf in m.multifields)], len(new_rows)
    )
    if new_rows and reserved is None:
        new_ids = [n[m.b24_id_column] for n in new_rows]
        for part in _chunks(new_ids):
            for kr in conn.execute(
                sa.select(parent.c[m.b24_id_column], parent.c[m.key]).where(
                    among(conn, parent.c[m.b24_id_column], part)
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
            new_values: Iterable[tuple[int, tuple[str, str]]]
            if row is None:  # a new owner: child_ops of no rows adds every wanted value
                new_values = wanted.items()
            else:
                existing_rows = children[mf.table].get(owner, [])
                ops = child_ops(erp_values(existing_rows), wanted, keep)
                gone += ops.gone
                changed += [{"_id": rid, "_t": t, "_v": v} for rid, (t, v) in ops.changed]
                new_values = ops.added
            added += [
                {MULTI_OWNER: owner, MULTI_VALUE_ID: vid, MULTI_TYPE: t, MULTI_VALUE: v}
                for vid, (t, v) in new_values
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
    link_new: list[tuple[Upsert, Any, MergeResult, str]] = []
    link_upd: list[dict[str, Any]] = []
    for up, link, _row, base, result in plans:
        done = outcomes[up.index]
        assert done is not None
        erp_key = str(erp_keys[up.b24_id])
        done.erp_key = erp_key
        done.pending_push = dict(result.to_portal)
        if result.has_conflict:
            done.action = "conflict"
            done.conflicts = sorted(result.conflicts)
            fields = conflict_fields(result)
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
            link_new.append((up, base, result, erp_key))
            continue
        agreed = new_base(m, base, result)
        if link["base"] != agreed or link["erp_key"] != erp_key or link["deleted"]:
            link_upd.append({"_id": link["id"], "_b": agreed, "_k": erp_key})
    for upd in conflict_upd:  # rare: one statement each keeps the shapes simple
        conn.execute(
            sync_conflict.update()
            .where(sync_conflict.c.id == upd["_id"])
            .values(**{k: v for k, v in upd.items() if k != "_id"})
        )
    if link_new:
        drop_dead_links(conn, m.entity, {new[3] for new in link_new})
        # a generator: each base is built while COPY sends the rows before it
        writer.bulk.rows(
            conn,
            sync_link,
            (
                {
                    "entity": m.entity,
                    "b24_id": up.b24_id,
                    "erp_key": erp_key,
                    "base": new_base(m, base, result),
                    "deleted": False,
                    "updated_at": now,
                }
                for up, base, result, erp_key in link_new
            ),
        )
    if link_upd:
        conn.execute(
            sync_link.update()
            .where(sync_link.c.id == sa.bindparam("_id"))
            .values(
                base=sa.bindparam("_b"), erp_key=sa.bindparam("_k"), deleted=False, updated_at=now
            ),
            link_upd,
        )
