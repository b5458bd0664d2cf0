"""What one chunk of ``apply_many`` reads before it merges: a query per table for up to
500 portal IDs (``IN``, or ``= ANY`` on PostgreSQL), never one per record.

:func:`preload` returns the links, the ERP rows (by portal ID), their child rows (by
table, then owner key, in ID order), the open conflicts and the ERP's own change times
(from its unpushed outbox rows) and what an interrupted push already sent, for the
three-way merge in ``erp_bulk``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Select, Table

from connector.adapters.store.bulk_insert import among_bound, key_list
from connector.adapters.store.conflict_rows import erp_change_times, in_flight_sent
from connector.adapters.store.erp_tables import MULTI_OWNER, MULTI_TYPE, MULTI_VALUE, MULTI_VALUE_ID
from connector.adapters.store.tables import sync_conflict, sync_link
from connector.core.mapping_model import EntityMapping

__all__ = ["Preloaded", "preload"]


@dataclass
class Preloaded:
    links: dict[int, Any]
    rows: dict[int, Any]
    children: dict[str, dict[Any, list[Any]]]
    open_conflicts: dict[int, Any]
    erp_times: dict[str, datetime]
    sent: dict[str, dict[str, Any]]  # an interrupted push's values, by ERP key


def preload(
    conn: Connection,
    m: EntityMapping,
    parent: Table,
    child_tables: Sequence[Table],
    ids: Sequence[int],
) -> Preloaded:
    """The current state of the records ``ids`` of ``m``, in one query per table."""
    form, listed = key_list(conn, ids)
    links = {
        int(r["b24_id"]): r
        for r in conn.execute(_links(form), {"entity": m.entity, "keys": listed}).mappings()
    }
    rows = {
        int(r[m.b24_id_column]): r
        for r in conn.execute(_rows(form, parent, m.b24_id_column), {"keys": listed}).mappings()
    }
    keys = [r[m.key] for r in rows.values()]
    children: dict[str, dict[Any, list[Any]]] = {}
    owner_form, owners = key_list(conn, keys)
    for t in child_tables:
        per_owner: dict[Any, list[Any]] = {}
        if keys:
            for r in conn.execute(_children(owner_form, t), {"keys": owners}).all():
                per_owner.setdefault(r[1], []).append(r)
        children[t.name] = per_owner
    open_conflicts: dict[int, Any] = {}
    for cr in conn.execute(_conflicts(form), {"entity": m.entity, "keys": listed}).all():
        open_conflicts.setdefault(int(cr[3]), cr)

    erp_times = erp_change_times(conn, m.entity, [str(k) for k in keys])
    sent = in_flight_sent(conn, m.entity, [str(k) for k in keys])
    return Preloaded(links, rows, children, open_conflicts, erp_times, sent)


# Each statement is built once per form and table (see among_bound), not once per chunk.


@lru_cache(maxsize=64)
def _links(form: str) -> Select[Any]:
    return sa.select(sync_link).where(
        sync_link.c.entity == sa.bindparam("entity"), among_bound(form, sync_link.c.b24_id)
    )


@lru_cache(maxsize=256)
def _rows(form: str, parent: Table, b24_id_column: str) -> Select[Any]:
    return sa.select(parent).where(among_bound(form, parent.c[b24_id_column]))


@lru_cache(maxsize=256)
def _children(form: str, t: Table) -> Select[Any]:
    return (
        sa.select(t.c.id, t.c[MULTI_OWNER], t.c[MULTI_VALUE_ID], t.c[MULTI_TYPE], t.c[MULTI_VALUE])
        .where(among_bound(form, t.c[MULTI_OWNER]))
        .order_by(t.c.id)
    )


@lru_cache(maxsize=64)
def _conflicts(form: str) -> Select[Any]:
    return sa.select(
        sync_conflict.c.id,
        sync_conflict.c.fields,
        sync_conflict.c.message_ids,
        sync_conflict.c.b24_id,
    ).where(
        sync_conflict.c.entity == sa.bindparam("entity"),
        among_bound(form, sync_conflict.c.b24_id),
        sync_conflict.c.status == "open",
    )
