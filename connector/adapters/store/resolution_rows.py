"""What an operator's resolution of a conflict writes outside the apply path.

The resolver (:mod:`connector.service.resolver`) runs these inside its one
``write_transaction``, next to ``ErpWriter.apply_many`` and the re-based link: a value
chosen with ``--value`` set on the ERP row, a record the portal lost unlinked on both
sides (the ERP row's portal ID cleared, its ``sync_link`` row dropped), a link dropped or
marked deleted when the ERP deleted the row, and the outbox rows the conflict held
(``status = held``) released to pending or closed as settled. The conflict row's own
step is :func:`connector.adapters.store.conflict_rows.update_conflict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from connector.adapters.store.outbox_views import DONE, HELD, PENDING
from connector.adapters.store.tables import sync_link, sync_outbox
from connector.core.mapping_model import EntityMapping

__all__ = [
    "drop_link",
    "linked_erp_key",
    "mark_link_deleted",
    "release_outbox",
    "set_erp_columns",
    "settle_held_outbox",
    "unlink_erp_row",
]


def linked_erp_key(conn: Connection, entity: str, b24_id: int) -> Any:
    """The ERP key ``sync_link`` holds for portal record ``b24_id``, or None."""
    return conn.execute(
        sa.select(sync_link.c.erp_key).where(
            sync_link.c.entity == entity, sync_link.c.b24_id == b24_id
        )
    ).scalar_one_or_none()


def set_erp_columns(
    conn: Connection, table: sa.Table, key_column: str, key: Any, columns: Mapping[str, Any]
) -> None:
    """Write ``columns`` (already in the database's form) on the ERP row ``key``."""
    conn.execute(table.update().where(table.c[key_column] == key).values(**columns))


def drop_link(conn: Connection, entity: str, b24_id: int) -> None:
    conn.execute(
        sync_link.delete().where(sync_link.c.entity == entity, sync_link.c.b24_id == b24_id)
    )


def unlink_erp_row(
    conn: Connection, table: sa.Table, m: EntityMapping, key: Any, b24_id: int
) -> None:
    """The portal record is gone: the ERP row ``key`` keeps its data but no portal ID,
    and its link goes (a later push adds it again as a new record, when asked to)."""
    conn.execute(table.update().where(table.c[m.key] == key).values(**{m.b24_id_column: None}))
    drop_link(conn, m.entity, b24_id)


def mark_link_deleted(conn: Connection, entity: str, b24_id: int, now: datetime) -> None:
    conn.execute(
        sync_link.update()
        .where(sync_link.c.entity == entity, sync_link.c.b24_id == b24_id)
        .values(deleted=True, updated_at=now)
    )


def release_outbox(conn: Connection, entity: str, erp_key: str, settled: bool) -> None:
    """Held outbox rows go back to pending (the merge sends what is still the ERP's
    to send), or are closed when the resolution itself settled them."""
    values: dict[str, Any] = {"locked_by": None, "locked_at": None}
    if settled:
        values.update(status=DONE, done_at=datetime.now(UTC), note="settled by resolution")
    else:
        values.update(status=PENDING, note="released by resolution")
    statuses = [HELD, PENDING] if settled else [HELD]
    conn.execute(
        sync_outbox.update()
        .where(
            sync_outbox.c.entity == entity,
            sync_outbox.c.erp_key == erp_key,
            sync_outbox.c.status.in_(statuses),
        )
        .values(**values)
    )


def settle_held_outbox(
    conn: Connection, entity: str, erp_key: str, note: str, now: datetime
) -> None:
    """The held outbox rows of ``erp_key`` are settled by the resolution: done, ``note``."""
    conn.execute(
        sync_outbox.update()
        .where(
            sync_outbox.c.entity == entity,
            sync_outbox.c.erp_key == erp_key,
            sync_outbox.c.status == HELD,
        )
        .values(status=DONE, done_at=now, locked_by=None, note=note)
    )
