"""Dead links in the way of a new one.

``sync_link`` is unique per (entity, ERP key). A link whose record was deleted stays as
``deleted`` (it keeps the portal ID, which is never reused). An ERP key can come back,
though: SQLite tables made before keys were AUTOINCREMENT, a MariaDB counter reset, an
ERP that recycles its numbers. Before a new link takes a key, the dead links holding it
are removed, so the new record links instead of failing the whole batch.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy import Connection, Delete

from connector.adapters.store.bulk_insert import among_bound, key_list
from connector.adapters.store.tables import sync_link

__all__ = ["drop_dead_links"]


def drop_dead_links(conn: Connection, entity: str, erp_keys: Collection[str]) -> int:
    """Delete the ``deleted`` links of ``entity`` that hold any of ``erp_keys``."""
    if not erp_keys:
        return 0
    form, listed = key_list(conn, sorted(erp_keys))
    result = conn.execute(_dead(form), {"entity": entity, "keys": listed})
    return int(result.rowcount or 0)


@lru_cache(maxsize=8)  # built once per form (see among_bound), not once per window
def _dead(form: str) -> Delete:
    return sync_link.delete().where(
        sync_link.c.entity == sa.bindparam("entity"),
        among_bound(form, sync_link.c.erp_key),
        sync_link.c.deleted.is_(True),
    )
