"""The read side of the CRM store: the sorted ID index, ``crm.<entity>.get`` and
``crm.<entity>.list`` (filter, order, select, paging), and the rendering of records.

:class:`CrmQueries` is mixed into ``crm.CrmStore``, which creates the state it reads
(records, the ID index, user fields) and does the writes. :class:`CrmRecord` (one stored
entity) and :func:`entity_type` (entity name → definition, 404 if unknown) live here so
both halves share them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector.emulator.crm_fields import ENTITY_TYPES, EntityType, render, semantic_of
from connector.emulator.filter_ops import (
    Condition,
    IdRange,
    as_list,
    id_range,
    matches,
    parse_filter,
    parse_order,
    sort_rows,
)
from connector.emulator.multifields import MultiValue
from connector.emulator.rest_errors import RestError, not_found

if TYPE_CHECKING:
    from connector.emulator.crm_userfields import UserField
    from connector.emulator.portal_contract import PortalContract

PAGE_SIZE = 50


@dataclass
class CrmRecord:
    """One stored entity: standard values, user-field values, multi-field values."""

    id: int
    values: dict[str, Any] = field(default_factory=dict)
    uf: dict[str, Any] = field(default_factory=dict)
    multi: dict[str, list[MultiValue]] = field(default_factory=dict)


def entity_type(entity: str) -> EntityType:
    try:
        return ENTITY_TYPES[entity.lower()]
    except KeyError:
        raise RestError("ERROR_METHOD_NOT_FOUND", f"Unknown CRM entity {entity!r}", 404) from None


class CrmQueries:
    """Reads of one portal's CRM (see the module docstring); mixed into ``CrmStore``."""

    portal: PortalContract
    _records: dict[str, dict[int, CrmRecord]]
    _ids: dict[str, list[int]]
    _userfields: dict[str, dict[str, UserField]]
    empty_multi_in_lists: bool

    # ---- reads -----------------------------------------------------------------------
    def exists(self, entity: str, entity_id: int) -> bool:
        return int(entity_id) in self._records[entity_type(entity).name]

    def ids(self, entity: str) -> list[int]:
        return list(self._ids[entity_type(entity).name])

    def count(self, entity: str) -> int:
        return len(self._records[entity_type(entity).name])

    def _record(self, etype: EntityType, entity_id: int) -> CrmRecord:
        record = self._records[etype.name].get(int(entity_id))
        if record is None:
            raise not_found()
        return record

    def get(self, entity: str, entity_id: int) -> dict[str, Any]:
        """The ``crm.<entity>.get`` answer: standard + non-empty multi + all UF fields."""
        etype = entity_type(entity)
        record = self._record(etype, entity_id)
        return self._render(etype, record, self._full_select(etype))

    def _full_select(self, etype: EntityType) -> list[str]:
        return [*self._standard(etype), *etype.multi_fields, *self._userfields[etype.name]]

    @staticmethod
    def _standard(etype: EntityType) -> list[str]:
        return [n for n, f in etype.fields.items() if f.type != "crm_multifield"]

    def _render(
        self, etype: EntityType, record: CrmRecord, select: list[str], *, listing: bool = False
    ) -> dict[str, Any]:
        clock = self.portal.clock
        out: dict[str, Any] = {}
        ufs = self._userfields[etype.name]
        for name in select:
            fdef = etype.fields.get(name)
            if name == "ID":
                out["ID"] = str(record.id)
            elif fdef is not None and fdef.type == "crm_multifield":
                values = record.multi.get(name) or []
                if values or (listing and self.empty_multi_in_lists):
                    out[name] = [v.render() for v in values]
            elif fdef is not None:
                out[name] = render(fdef, self._value(etype, record, name), clock)
            elif name in ufs:
                out[name] = ufs[name].render(record.uf.get(name), clock)
        return out

    def _value(self, etype: EntityType, record: CrmRecord, name: str) -> Any:
        """A field's stored value, computed flags included."""
        if name == "ID":
            return record.id
        if name in ("HAS_PHONE", "HAS_EMAIL"):
            return "Y" if record.multi.get(name[4:]) else "N"
        if name == "HAS_IMOL":
            return "Y" if any(v.value_type == "IMOL" for v in record.multi.get("IM", [])) else "N"
        if name == "STATUS_SEMANTIC_ID":
            return semantic_of(record.values.get("STATUS_ID"))
        if name == "STAGE_SEMANTIC_ID":
            return semantic_of(record.values.get("STAGE_ID"))
        return record.values.get(name)

    def _values_for_filter(self, etype: EntityType, record: CrmRecord, name: str) -> list[Any]:
        fdef = etype.fields.get(name)
        if fdef is not None and fdef.type == "crm_multifield":
            return [v.value for v in record.multi.get(name, [])]
        if name in self._userfields[etype.name]:
            stored = record.uf.get(name)
            return list(stored) if isinstance(stored, list) else [stored]
        return [self._value(etype, record, name)]

    def _kind(self, etype: EntityType, name: str) -> str:
        fdef = etype.fields.get(name)
        if fdef is not None:
            return fdef.kind
        uf = self._userfields[etype.name].get(name)
        return uf.kind if uf is not None else "str"

    def query(
        self,
        entity: str,
        *,
        filter: object = None,
        order: object = None,
        select: object = None,
        start: int = 0,
        use_index: bool = True,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """``crm.<entity>.list``: one page of 50 and the total (``None`` when start=-1).

        Candidates come from the sorted ID index, narrowed first by the filter's ID
        window (``>ID``, ``<=ID``, ``@ID``, ... — see ``filter_ops.id_range``); the rest of
        the filter then runs on those only. When the order starts with ID they are
        already in order, so without a total (``start=-1``) the scan stops at a full page.
        Only the returned rows are rendered. ``use_index=False`` runs the whole filter
        over every record and sorts: the reference the index must agree with (tests).
        """
        etype = entity_type(entity)
        known = {*etype.fields, *self._userfields[etype.name]}
        conds = [c for c in parse_filter(filter, error_code="") if c.field in known]
        sort = [(n, d) for n, d in parse_order(order, error_code="") if n in known] or [
            ("ID", False)
        ]
        kinds = {c.field: self._kind(etype, c.field) for c in conds}
        offset = 0 if start < 0 else start
        records = self._records[etype.name]
        by_id = use_index and sort[0][0] == "ID"
        if not use_index:
            rows = [r for _, r in sorted(records.items()) if self._passes(etype, conds, kinds, r)]
        else:
            window = id_range(conds)
            conds = window.rest(conds)
            ids, positions = self._window(etype, window, descending=by_id and sort[0][1])
            if by_id and not conds:
                total = len(positions)
                rows = [records[ids[k]] for k in positions[offset : offset + PAGE_SIZE]]
            elif by_id:
                candidates = (records[ids[k]] for k in positions)
                rows, total = self._scan(
                    etype, conds, kinds, candidates, offset, counted=start >= 0
                )
            else:
                rows = [records[ids[k]] for k in positions]
                rows = [r for r in rows if self._passes(etype, conds, kinds, r)]
        if not by_id:
            rows = sort_rows(
                rows,
                sort,
                lambda r, f: self._sort_value(etype, r, f),
                lambda f: self._kind(etype, f),
            )
            total = len(rows)
            rows = rows[offset : offset + PAGE_SIZE]
        fields = self._select(etype, select)
        page = [self._render(etype, r, fields, listing=True) for r in rows]
        return page, (None if start < 0 else total)

    def _window(
        self, etype: EntityType, window: IdRange, *, descending: bool
    ) -> tuple[list[int], range]:
        """The stored IDs inside ``window``: a sorted ID list and the positions in it to
        visit, in ID order (ascending or descending). Bisecting the index, no copying."""
        ids = self._ids[etype.name]
        if window.members is not None:
            records = self._records[etype.name]
            ids = sorted(i for i in window.members if i in records and window.allows(i))
            lo, hi = 0, len(ids)
        else:
            lo = 0 if window.low is None else bisect_left(ids, window.low)
            hi = len(ids) if window.high is None else bisect_right(ids, window.high)
            hi = max(lo, hi)
        return ids, (range(hi - 1, lo - 1, -1) if descending else range(lo, hi))

    def _scan(
        self,
        etype: EntityType,
        conds: list[Condition],
        kinds: dict[str, str],
        candidates: Iterable[CrmRecord],
        offset: int,
        *,
        counted: bool,
    ) -> tuple[list[CrmRecord], int]:
        """Filter ordered candidates: the page at ``offset`` and, if ``counted``, the total
        (otherwise the scan stops once the page is full and the count is partial)."""
        page: list[CrmRecord] = []
        passed = 0
        end = offset + PAGE_SIZE
        for record in candidates:
            if not self._passes(etype, conds, kinds, record):
                continue
            if offset <= passed < end:
                page.append(record)
            passed += 1
            if passed >= end and not counted:
                break
        return page, passed

    def _passes(
        self, etype: EntityType, conds: list[Condition], kinds: dict[str, str], record: CrmRecord
    ) -> bool:
        return matches(
            conds,
            lambda name: self._values_for_filter(etype, record, name),
            kinds.__getitem__,
        )

    def _sort_value(self, etype: EntityType, record: CrmRecord, name: str) -> Any:
        values = self._values_for_filter(etype, record, name)
        return values[0] if values else None

    def _select(self, etype: EntityType, select: object) -> list[str]:
        wanted = (
            [str(s).strip().upper() for s in as_list(select)]
            if select not in (None, "", [], {})
            else []
        )
        standard = self._standard(etype)
        if not wanted:
            return standard
        result: list[str] = ["ID"]
        for name in wanted:
            if name == "*":
                result += standard
            elif name == "UF_*":
                result += list(self._userfields[etype.name])
            elif name in etype.fields or name in self._userfields[etype.name]:
                result.append(name)
        return list(dict.fromkeys(result))
