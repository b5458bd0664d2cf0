"""Apply a portal record's current state to the ERP tables, three-way, in a transaction.

For each record the writer reads the ERP row (by ``b24_id``) and the merge base
(``sync_link.base``), runs :func:`connector.core.merge.merge_record`, writes the fields that
move to the ERP, replaces multi-field child rows by portal value ID, records conflicts in
``sync_conflict`` and stores the new base. Re-applying the same portal state changes
nothing (no row, no timestamp), so a re-delivered batch leaves the database identical.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Table

from connector.adapters.store.bulk_insert import BulkInsert
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
from connector.adapters.store.erp_tables import (
    MULTI_OWNER,
    MULTI_TYPE,
    MULTI_VALUE,
    MULTI_VALUE_ID,
    erp_metadata,
)
from connector.adapters.store.table_stats import TableStats
from connector.adapters.store.tables import sync_conflict, sync_link, sync_record_error
from connector.core.field_values import canonical, erp_canonical, to_erp, to_portal
from connector.core.mapping_model import DeletePolicy, EntityMapping, FieldMapping, MappingSet
from connector.core.merge import FieldRule, MergeResult, Split, merge_record
from connector.core.multi_merge import ErpValue, child_ops, wanted_from
from connector.errors import RecordError

MultiValue = tuple[tuple[str, str], ...]
SPLIT = "__split__"
"""How a :class:`Split` base is stored: ``{"__split__": [portal value, ERP value]}``."""


@dataclass
class ApplyOutcome:
    """What happened to one record."""

    entity: str
    b24_id: int
    action: str  # inserted | updated | unchanged | deleted | conflict | skipped
    conflicts: list[str] = field(default_factory=list)
    pending_push: dict[str, Any] = field(default_factory=dict)
    conflict_id: int | None = None
    error: RecordError | None = None  # set when action == "error" (apply_many only)
    erp_key: str | None = None  # the ERP row's key (apply_many only)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_json_safe(v) for v in value]
    return value


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

    # --- values ----------------------------------------------------------------------

    @staticmethod
    def _db_value(conn: Connection, value: Any) -> Any:
        if isinstance(value, datetime) and conn.dialect.name != "postgresql":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def _portal_side(
        self, m: EntityMapping, b24_id: int, record: Mapping[str, Any]
    ) -> dict[str, Any]:
        side: dict[str, Any] = {}
        for fm in m.fields:
            if fm.portal in record:
                side[fm.portal] = canonical(
                    fm, to_erp(fm, record[fm.portal], entity=m.entity, record_id=b24_id)
                )
        # The portal leaves an empty multi-field out of a list answer even when it was
        # selected (every read here selects them all): absent means "no values".
        for mf in m.multifields:
            side[mf.portal] = self._multi_from_portal(m, b24_id, mf.portal, record.get(mf.portal))
        return side

    @staticmethod
    def _multi_from_portal(
        m: EntityMapping, b24_id: int, code: str, raw: Any
    ) -> dict[int, tuple[str, str]]:
        if raw in (None, "", []):
            return {}
        items = raw.values() if isinstance(raw, Mapping) else raw
        if not isinstance(items, (list, tuple)) and not isinstance(raw, Mapping):
            raise RecordError(
                f"expected a list of values, got {type(raw).__name__}",
                entity=m.entity,
                record_id=b24_id,
                field=code,
            )
        out: dict[int, tuple[str, str]] = {}
        for item in items:
            if not isinstance(item, Mapping) or "VALUE" not in item:
                raise RecordError(
                    "multi-field value without VALUE", entity=m.entity, record_id=b24_id, field=code
                )
            try:
                value_id = int(item.get("ID"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise RecordError(
                    "multi-field value without a numeric ID",
                    entity=m.entity,
                    record_id=b24_id,
                    field=code,
                ) from None
            value = str(item["VALUE"])
            if len(value) > 255:
                raise RecordError(
                    f"{len(value)} characters do not fit (255)",
                    entity=m.entity,
                    record_id=b24_id,
                    field=code,
                )
            out[value_id] = (str(item.get("VALUE_TYPE") or ""), value)
        return out

    @staticmethod
    def _multi_key(values: Mapping[int, tuple[str, str]]) -> MultiValue:
        return tuple(sorted(values.values()))

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
        """Apply the portal's state of one record (``None``: it is gone from the portal)."""
        if record is None:
            return self._apply_delete(conn, m, b24_id, message_id, now)
        parent = self.table(m.table)
        link = (
            conn.execute(
                sa.select(sync_link).where(
                    sync_link.c.entity == m.entity, sync_link.c.b24_id == b24_id
                )
            )
            .mappings()
            .first()
        )
        row = (
            conn.execute(sa.select(parent).where(parent.c[m.b24_id_column] == b24_id))
            .mappings()
            .first()
        )
        portal_side = self._portal_side(m, b24_id, record)
        portal_multi = {k: v for k, v in portal_side.items() if isinstance(v, dict)}
        portal_cmp = {
            k: (self._multi_key(v) if isinstance(v, dict) else v) for k, v in portal_side.items()
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
                rows = self._read_multi(conn, mf.table, row[m.key])
                erp_cmp[mf.portal] = tuple(sorted(r.pair for r in rows))
                multi[mf.portal] = (portal_multi.get(mf.portal) or {}, rows)
        base = self._base(m, link["base"] if link else None)
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
            skew=self.skew,
            multi=multi,
        )
        outcome = ApplyOutcome(m.entity, b24_id, "unchanged")
        values = {
            fm.column: self._db_value(conn, result.to_erp[fm.portal])
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
                self._write_multi(conn, mf.table, erp_key, wanted, keep)
                outcome.action = "inserted" if row is None else "updated"
        outcome.pending_push = dict(result.to_portal)
        new_base = self._new_base(m, base, result)
        if result.has_conflict:
            outcome.action = "conflict"
            outcome.conflicts = sorted(result.conflicts)
            outcome.conflict_id = self._record_conflict(
                conn, m, b24_id, str(erp_key), self._conflict_fields(result), message_id, now, times
            )
        self._write_link(conn, m, b24_id, str(erp_key), link, new_base, now)
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
        from connector.adapters.store.erp_bulk import apply_many

        return apply_many(self, conn, m, items, now=now, on_progress=on_progress)

    def _read_multi(self, conn: Connection, table: str, owner: Any) -> list[ErpValue]:
        t = self.table(table)
        rows = conn.execute(
            sa.select(t.c.id, t.c[MULTI_VALUE_ID], t.c[MULTI_TYPE], t.c[MULTI_VALUE])
            .where(t.c[MULTI_OWNER] == owner)
            .order_by(t.c.id)
        ).all()
        return [
            ErpValue(int(r[0]), None if r[1] is None else int(r[1]), (r[2] or "", r[3]))
            for r in rows
        ]

    def _write_multi(
        self,
        conn: Connection,
        table: str,
        owner: Any,
        wanted: Mapping[int, tuple[str, str]],
        keep: frozenset[int],
    ) -> None:
        t = self.table(table)
        ops = child_ops(self._read_multi(conn, table, owner), wanted, keep)
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

    # --- base --------------------------------------------------------------------------

    def _base(self, m: EntityMapping, stored: Any) -> dict[str, Any] | None:
        if not isinstance(stored, Mapping):
            return None
        base: dict[str, Any] = {}

        def plain(fm: FieldMapping, raw: Any) -> Any:
            return canonical(fm, to_erp(fm, raw, entity=m.entity, record_id=None))

        def pairs(raw: Any) -> MultiValue:
            return tuple(tuple(pair) for pair in raw or ())

        for fm in m.fields:
            if fm.portal in stored:
                raw = stored[fm.portal]
                split = raw.get(SPLIT) if isinstance(raw, Mapping) else None
                base[fm.portal] = (
                    Split(plain(fm, split[0]), plain(fm, split[1]))
                    if isinstance(split, list)
                    else plain(fm, raw)
                )
        for mf in m.multifields:
            if mf.portal in stored:
                raw = stored[mf.portal]
                split = raw.get(SPLIT) if isinstance(raw, Mapping) else None
                base[mf.portal] = (
                    Split(pairs(split[0]), pairs(split[1]))
                    if isinstance(split, list)
                    else pairs(raw)
                )
        return base

    def _new_base(
        self, m: EntityMapping, old: Mapping[str, Any] | None, result: MergeResult
    ) -> dict[str, Any]:
        merged: dict[str, Any] = dict(old or {})
        for name, value in result.agreed.items():
            if name not in result.to_portal:  # not agreed until the portal has it
                merged[name] = value
        merged.update(result.split)
        out: dict[str, Any] = {}
        for fm in m.fields:
            if fm.portal in merged:
                value = merged[fm.portal]
                if isinstance(value, Split):
                    out[fm.portal] = {
                        SPLIT: [
                            to_portal(fm, value.portal, entity=m.entity, record_id=None),
                            to_portal(fm, value.erp, entity=m.entity, record_id=None),
                        ]
                    }
                else:
                    out[fm.portal] = to_portal(fm, value, entity=m.entity, record_id=None)
        for mf in m.multifields:
            if mf.portal in merged:
                value = merged[mf.portal]
                if isinstance(value, Split):
                    out[mf.portal] = {SPLIT: [_json_safe(value.portal), _json_safe(value.erp)]}
                else:
                    out[mf.portal] = _json_safe(value)
        return out

    def _write_link(
        self,
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

    @staticmethod
    def _conflict_fields(result: MergeResult) -> dict[str, Any]:
        return {
            name: {
                "base": _json_safe(s.base),
                "portal": _json_safe(s.portal),
                "erp": _json_safe(s.erp),
            }
            for name, s in result.conflicts.items()
        }

    def _record_conflict(
        self,
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
            sa.select(
                sync_conflict.c.id, sync_conflict.c.fields, sync_conflict.c.message_ids
            ).where(
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

    # --- delete ------------------------------------------------------------------------

    def _apply_delete(
        self,
        conn: Connection,
        m: EntityMapping,
        b24_id: int,
        message_id: str | None,
        now: datetime,
    ) -> ApplyOutcome:
        parent = self.table(m.table)
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
            outcome.conflict_id = self._record_conflict(
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
                    t = self.table(mf.table)
                    conn.execute(t.delete().where(t.c[MULTI_OWNER] == row[m.key]))
                conn.execute(parent.delete().where(parent.c[m.key] == row[m.key]))
                outcome.action = "deleted"
            elif m.delete_policy is DeletePolicy.MARK and row[m.deleted_column] is None:
                conn.execute(
                    parent.update()
                    .where(parent.c[m.key] == row[m.key])
                    .values(**{m.deleted_column: self._db_value(conn, now)})
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
            "payload": _json_safe_deep(payload),
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


def _json_safe_deep(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe_deep(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe_deep(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
