"""The deletes of one ``apply_many`` chunk: portal records that are gone.

Under the mapping's ``delete_policy`` the ERP rows are deleted (with their child rows) or
marked (``deleted_column`` set once), and the links marked deleted — a statement per
table for the whole chunk. A record with an open conflict is not deleted: the delete
joins that conflict (delete vs edit, the operator decides) and nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Table

from connector.adapters.store.apply_outcome import ApplyOutcome
from connector.adapters.store.conflict_rows import (
    DELETE_CONFLICT,
    DELETED_FIELD,
    SideTimes,
    conflict_update,
)
from connector.adapters.store.erp_preload import Preloaded
from connector.adapters.store.erp_tables import MULTI_OWNER
from connector.adapters.store.record_forms import db_value
from connector.adapters.store.tables import sync_link
from connector.core.mapping_model import DeletePolicy, EntityMapping

__all__ = ["apply_deletes"]


class _Tables(Protocol):
    def table(self, name: str) -> Table: ...


def apply_deletes(
    writer: _Tables,
    conn: Connection,
    m: EntityMapping,
    gone: Sequence[tuple[int, str | None]],
    known: Preloaded,
    now: datetime,
) -> tuple[list[ApplyOutcome], list[dict[str, Any]]]:
    """Apply ``gone`` (``(b24_id, message_id)``): one outcome each, in order, and the
    updates for the open conflicts the held ones joined (``{"_id": …, column: value}``)."""
    parent = writer.table(m.table)
    outcomes: list[ApplyOutcome] = []
    conflict_upd: list[dict[str, Any]] = []
    deletes: list[int] = []
    gone_keys: list[Any] = []
    for b24_id, message_id in gone:
        held = known.open_conflicts.get(b24_id)
        if held is not None:  # delete vs edit: it joins the open conflict
            outcome = ApplyOutcome(m.entity, b24_id, "conflict", conflicts=[DELETED_FIELD])
            outcome.conflict_id = int(held[0])
            times = SideTimes(now, None)
            values = conflict_update(held, DELETE_CONFLICT, message_id, times, now, merge=True)
            if values:
                conflict_upd.append({"_id": held[0], **values})
            outcomes.append(outcome)
            continue
        deletes.append(b24_id)
        outcome = ApplyOutcome(m.entity, b24_id, "unchanged")
        row = known.rows.get(b24_id)
        marked = m.delete_policy is DeletePolicy.MARK
        if row is not None and (
            m.delete_policy is DeletePolicy.DELETE or (marked and row[m.deleted_column] is None)
        ):
            gone_keys.append(row[m.key])
            outcome.action = "deleted"
        outcomes.append(outcome)
    if not deletes:
        return outcomes, conflict_upd
    if gone_keys and m.delete_policy is DeletePolicy.DELETE:
        for mf in m.multifields:
            t = writer.table(mf.table)
            conn.execute(t.delete().where(t.c[MULTI_OWNER].in_(gone_keys)))
        conn.execute(parent.delete().where(parent.c[m.key].in_(gone_keys)))
    elif gone_keys:
        conn.execute(
            parent.update()
            .where(parent.c[m.key].in_(gone_keys))
            .values(**{m.deleted_column: db_value(conn, now)})
        )
    conn.execute(
        sync_link.update()
        .where(
            sync_link.c.entity == m.entity,
            sync_link.c.b24_id.in_(deletes),
            sync_link.c.deleted.is_(False),
        )
        .values(deleted=True, updated_at=now)
    )
    return outcomes, conflict_upd
