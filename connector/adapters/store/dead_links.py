"""Dead links in the way of a new one.

``sync_link`` is unique per (entity, ERP key). A link whose record was deleted stays as
``deleted`` (it keeps the portal ID, which is never reused). An ERP key can come back,
though: SQLite tables made before keys were AUTOINCREMENT, a MariaDB counter reset, an
ERP that recycles its numbers. Before a new link takes a key, the dead links holding it
are removed, so the new record links instead of failing the whole batch.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection

from connector.adapters.store.bulk_insert import among
from connector.adapters.store.tables import sync_link

__all__ = ["drop_dead_links"]


def drop_dead_links(conn: Connection, entity: str, erp_keys: Collection[str]) -> int:
    """Delete the ``deleted`` links of ``entity`` that hold any of ``erp_keys``."""
    if not erp_keys:
        return 0
    result = conn.execute(
        sync_link.delete().where(
            sync_link.c.entity == entity,
            among(conn, sync_link.c.erp_key, sorted(erp_keys)),
            sync_link.c.deleted.is_(True),
        )
    )
    return int(result.rowcount or 0)
