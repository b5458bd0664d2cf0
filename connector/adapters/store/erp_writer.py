"""Apply a portal record's current state to the ERP tables, three-way, in a transaction.

For each record the writer reads the ERP row (by ``b24_id``) and the merge base
(``sync_link.base``), runs :func:`connector.core.merge.merge_record`, writes the fields that
move to the ERP, replaces multi-field child rows by portal value ID, records conflicts in
``sync_conflict`` and stores the new base. Re-applying the same portal state changes
nothing (no row, no timestamp), so a re-delivered batch leaves the database identical.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Table

from connector.adapters.store.apply_outcome import ApplyOutcome
from connector.adapters.store.bulk_insert import BulkInsert
from connector.adapters.store.erp_bulk import apply_many
from connector.adapters.store.erp_tables import erp_metadata
from connector.adapters.store.record_forms import (
    SPLIT,
    MultiValue,
    conflict_fields,
    db_value,
    json_safe,
    json_safe_deep,
    multi_from_portal,
    multi_key,
    new_base,
    portal_side,
    stored_base,
)
from connector.adapters.store.table_stats import TableStats
from connector.adapters.store.tables import sync_record_error
from connector.core.mapping_model import EntityMapping, MappingSet
from connector.errors import RecordError

__all__ = ["SPLIT", "ApplyOutcome", "ErpWriter", "MultiValue", "json_safe", "json_safe_deep"]


class ErpWriter:
    """Writes portal state into the ERP tables described by ``mappings``."""

    def __init__(self, mappings: MappingSet, *, skew: float = 5.0) -> None:
        self.mappings = mappings
        self.metadata = erp_metadata(mappings)
        self.skew = timedelta(seconds=skew)  # newer_wins: closer than this is a conflict
        self.table_stats = TableStats()  # PostgreSQL: ANALYZE as a large load grows a table
        self.bulk = BulkInsert()  # COPY and reserved keys on PostgreSQL

    def table(self, name: str) -> Table:
        return self.metadata.tables[name]

    # the record's forms (``adapters/store/record_forms.py``), as the writer's callers use them
    _db_value = staticmethod(db_value)
    _portal_side = staticmethod(portal_side)
    _multi_from_portal = staticmethod(multi_from_portal)
    _multi_key = staticmethod(multi_key)
    _base = staticmethod(stored_base)
    _new_base = staticmethod(new_base)
    _conflict_fields = staticmethod(conflict_fields)

    # --- apply -----------------------------------------------------------------------

    def apply(
        self,
        conn: Connection,
        m: EntityMapping,
        b24_id: int,
        record: Mapping[str, Any] | None,
        *,
        message_id: str | None,
        now: datetime,
    ) -> ApplyOutcome:
        """Apply the portal's state of one record (``None``: it is gone from the portal): a
        batch of one. A record whose values do not convert raises :class:`RecordError`."""
        [outcome] = self.apply_many(conn, m, [(b24_id, record, message_id)], now=now)
        if outcome.error is not None:
            raise outcome.error
        return outcome

    def apply_many(
        self,
        conn: Connection,
        m: EntityMapping,
        items: Sequence[tuple[int, Mapping[str, Any] | None, str | None]],
        *,
        now: datetime,
        on_progress: Callable[[], None] | None = None,
    ) -> list[ApplyOutcome]:
        """Apply many records as :meth:`apply` would, one by one, with few statements.

        ``items`` are ``(b24_id, record | None, message_id)``. One outcome per item, in
        order: a repeated id gets ``skipped`` (the first wins), a record that does not
        convert gets ``error`` (with ``error`` set) and writes nothing. ``on_progress`` is
        called once, after the first chunk is written (a crash hook for tests).
        """
        return apply_many(self, conn, m, items, now=now, on_progress=on_progress)

    # --- bad input ---------------------------------------------------------------------

    @staticmethod
    def record_error(
        conn: Connection,
        error: RecordError,
        *,
        b24_id: int | None,
        message_id: str | None,
        payload: Any,
        now: datetime,
    ) -> None:
        """Keep a record that could not be synced, for the operator (``errors list``).

        One open error per record: seen again, the open row is brought up to date.
        """
        values = {
            "field": error.field,
            "message": str(error),
            "message_id": message_id,
            "payload": json_safe_deep(payload),
            "last_seen_at": now,
        }
        same = (
            sync_record_error.c.b24_id == b24_id
            if b24_id is not None
            else sync_record_error.c.message_id == message_id
        )
        if b24_id is not None or message_id is not None:  # delivered again: one row
            found = conn.execute(
                sa.select(sync_record_error.c.id).where(
                    sync_record_error.c.entity == error.entity,
                    same,
                    sync_record_error.c.status == "open",
                )
            ).first()
            if found is not None:
                conn.execute(
                    sync_record_error.update()
                    .where(sync_record_error.c.id == found[0])
                    .values(**values)
                )
                return
        conn.execute(
            sync_record_error.insert().values(
                entity=error.entity, b24_id=b24_id, status="open", created_at=now, **values
            )
        )

    @staticmethod
    def resolve_errors(conn: Connection, entity: str, b24_ids: Sequence[int], now: datetime) -> int:
        """Records that synced now: their open errors are closed."""
        if not b24_ids:
            return 0
        result = conn.execute(
            sync_record_error.update()
            .where(
                sync_record_error.c.entity == entity,
                sync_record_error.c.b24_id.in_(list(b24_ids)),
                sync_record_error.c.status == "open",
            )
            .values(status="resolved", resolved_at=now)
        )
        return int(result.rowcount or 0)
