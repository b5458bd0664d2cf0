"""One chunk's records converted and merged: the middle of ``erp_bulk``'s chunk.

:class:`ChunkPlan` runs after the preload and before any write: for each record it
converts the portal record, merges it three-way with the link's base and the ERP row,
and decides the parent row: :meth:`ChunkPlan.merge` returns the new rows and keeps the
updates in :attr:`ChunkPlan.updates`, the merged records in :attr:`ChunkPlan.plans`.
No statement runs here.

(Fed as a generator into the parent rows' ``COPY``, as the links' bases are, the merge
measured no faster: psycopg sends a ``COPY`` in 32 KB pieces, a few per chunk of parent
rows, so little of the server's work overlapped it.)

A record whose values do not convert gets the outcome ``error`` (naming the record and
the field) and yields nothing; the others go on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connector.adapters.store.apply_outcome import ApplyOutcome
from connector.adapters.store.conflict_rows import SideTimes, portal_time
from connector.adapters.store.erp_preload import Preloaded
from connector.adapters.store.record_forms import multi_key, naive_utc, portal_side, stored_base
from connector.core.field_values import erp_canonical
from connector.core.mapping_model import DeletePolicy, EntityMapping
from connector.core.merge import FieldRule, MergeResult, merge_record
from connector.core.multi_merge import ErpValue
from connector.errors import RecordError

__all__ = ["ChunkPlan", "Item", "Plan", "Upsert", "erp_values"]

Item = tuple[int, Mapping[str, Any] | None, str | None]
_UNSET = object()


@dataclass(slots=True)
class Upsert:
    index: int
    b24_id: int
    message_id: str | None
    portal_side: dict[str, Any]
    times: SideTimes


Plan = tuple[Upsert, Any, Any, dict[str, Any] | None, MergeResult]
"""A merged record: ``(upsert, link row, ERP row, merge base, merge result)``."""


def erp_values(rows: Sequence[Any]) -> list[ErpValue]:
    """Child rows ``(id, owner, value ID, type, value)`` as the merge sees them."""
    return [
        ErpValue(int(r[0]), None if r[2] is None else int(r[2]), (r[3] or "", r[4])) for r in rows
    ]


class ChunkPlan:
    """The merge of one chunk (:meth:`merge` fills in the results)."""

    def __init__(
        self,
        m: EntityMapping,
        items: Sequence[Item],
        chunk: Sequence[int],
        known: Preloaded,
        outcomes: list[ApplyOutcome | None],
        *,
        skew: timedelta,
        naive_times: bool,
    ) -> None:
        self.m, self.items, self.chunk, self.known = m, items, chunk, known
        self.outcomes, self.skew, self.naive_times = outcomes, skew, naive_times
        self.plans: list[Plan] = []
        self.updates: list[dict[str, Any]] = []  # {"_key": ERP key, column: value, …}
        self.erp_keys: dict[int, Any] = {}  # portal ID → ERP key, of every merged record
        self._rules = {fm.portal: FieldRule(fm.direction, fm.conflict) for fm in m.fields}
        self._rules |= {mf.portal: FieldRule(mf.direction, mf.conflict) for mf in m.multifields}

    def merge(self) -> list[dict[str, Any]]:
        """Merge every record; the new parent rows, in order (keys not yet set)."""
        m = self.m
        new_rows: list[dict[str, Any]] = []
        for up, row, result in self._merged():
            to_erp = result.to_erp
            values = {
                fm.column: (
                    naive_utc(value)
                    if self.naive_times and isinstance(value := to_erp[fm.portal], datetime)
                    else to_erp[fm.portal]
                )
                for fm in m.fields
                if fm.portal in to_erp
            }
            if (
                row is not None
                and m.delete_policy is DeletePolicy.MARK
                and row.get(m.deleted_column) is not None
            ):
                values[m.deleted_column] = None
            outcome = ApplyOutcome(m.entity, up.b24_id, "unchanged")
            self.outcomes[up.index] = outcome
            if row is not None:
                self.erp_keys[up.b24_id] = row[m.key]
                if values:
                    self.updates.append({"_key": row[m.key], **values})
                    outcome.action = "updated"
                continue
            outcome.action = "inserted"
            new_rows.append({m.b24_id_column: up.b24_id, **values})
        return new_rows

    def _merged(self) -> Iterator[tuple[Upsert, Any, MergeResult]]:
        m, known = self.m, self.known
        for i in self.chunk:
            b24_id, record, message_id = self.items[i]
            if record is None:
                continue
            link = known.links.get(b24_id)
            row = known.rows.get(b24_id)
            try:
                side = portal_side(m, b24_id, record)
                base = stored_base(m, link["base"] if link else None)
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
                self.outcomes[i] = ApplyOutcome(m.entity, b24_id, "error", error=err)
                continue
            portal_cmp = {k: (multi_key(v) if isinstance(v, dict) else v) for k, v in side.items()}
            sent = known.sent.get(str(row[m.key])) if row is not None and base is not None else None
            if sent and base is not None:  # what an interrupted push sent is our own write
                ours = stored_base(m, sent) or {}
                base = base | {c: v for c, v in ours.items() if portal_cmp.get(c, _UNSET) == v}
            erp_cmp: dict[str, Any] | None = None
            multi: dict[str, Any] = {}
            if row is not None:
                erp_cmp = dict(erp_plain or {})
                for mf in m.multifields:
                    existing = erp_values(known.children[mf.table].get(row[m.key], []))
                    erp_cmp[mf.portal] = tuple(sorted(v.pair for v in existing))
                    multi[mf.portal] = (side.get(mf.portal) or {}, existing)
            times = SideTimes(
                portal_time(record),
                known.erp_times.get(str(row[m.key])) if row is not None else None,
            )
            result = merge_record(
                self._rules,
                base,
                portal_cmp,
                erp_cmp,
                portal_modified=times.portal,
                erp_modified=times.erp,
                skew=self.skew,
                multi=multi,
            )
            up = Upsert(i, b24_id, message_id, side, times)
            self.plans.append((up, link, row, base, result))
            yield up, row, result
