"""Portal records our own push created whose local commit was lost.

A kill between the portal's answer to ``crm.<entity>.add`` and the push's commit leaves a
record in the portal (``ORIGINATOR_ID`` = our connector id, ``ORIGIN_ID`` = the ERP key)
and, here, an ERP row with no ``b24_id`` and no link. Whoever reads that record next — a
drain (a portal user edited it), a backfill window, a reconcile — must not insert a
second ERP row for it: the push's retry finds it by ``ORIGIN_ID``, links the original
row and merges the portal's state, a portal edit made meanwhile included (and with a
second row there, that link would break the unique ``b24_id`` for good).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection

from connector.adapters.store.erp_writer import ErpWriter
from connector.adapters.store.tables import sync_link
from connector.core.mapping_model import EntityMapping

__all__ = ["ORIGIN_CODES", "without_unconfirmed_adds"]

log = logging.getLogger(__name__)

ORIGIN_CODES = ("ORIGINATOR_ID", "ORIGIN_ID")
"""Read with every fetch of portal state: they name a record our own push created."""

Item = TypeVar("Item", bound=tuple[Any, ...])


def without_unconfirmed_adds(
    conn: Connection,
    writer: ErpWriter,
    m: EntityMapping,
    connector_id: str | None,
    items: Sequence[Item],
) -> list[Item]:
    """``items`` (``(b24_id, state, ...)``) less our unconfirmed adds (see the module)."""
    if not connector_id:
        return list(items)
    ours: dict[str, int] = {}
    for item in items:
        b24_id, state = item[0], item[1]
        if isinstance(state, Mapping) and str(state.get("ORIGINATOR_ID") or "") == connector_id:
            origin = str(state.get("ORIGIN_ID") or "")
            if origin:
                ours[origin] = int(b24_id)
    if not ours:
        return list(items)
    parent = writer.table(m.table)
    linked = set(
        conn.execute(
            sa.select(sync_link.c.b24_id).where(
                sync_link.c.entity == m.entity, sync_link.c.b24_id.in_(list(ours.values()))
            )
        ).scalars()
    )
    column = parent.c[m.key]
    keys: list[Any] = list(ours)
    if column.type.python_type is int:  # ORIGIN_ID is text; the key column may not be
        keys = [int(k) for k in keys if k.isdigit()]
    waiting = {
        ours[str(key)]
        for key in conn.execute(
            sa.select(column).where(column.in_(keys), parent.c[m.b24_id_column].is_(None))
        ).scalars()
        if ours[str(key)] not in linked
    }
    for b24_id in sorted(waiting):
        log.info("%s %d: our own add, not confirmed yet; the push links it", m.entity, b24_id)
    return [item for item in items if int(item[0]) not in waiting]
