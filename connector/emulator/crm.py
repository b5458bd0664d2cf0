"""The CRM store behind crm.{lead,contact,company,deal}.* (methods in ``crm_methods``).

:class:`CrmStore` holds the records in memory. Every write fires
``ONCRM<ENTITY>ADD/UPDATE/DELETE`` with ``{"FIELDS": {"ID": <int>}}`` through
``portal.events`` under the caller's :class:`CallContext` (REST) or a simulated UI user.

Python API (for the control surface, seeding and tests) — every method takes the entity
name (``"lead"``, ``"contact"``, ``"company"``, ``"deal"``):

* ``add(ctx, entity, fields, *, user_id=1) -> int``
* ``update(ctx, entity, id, fields, *, user_id=1) -> None``
* ``delete(ctx, entity, id, *, user_id=1) -> None``
* ``get(entity, id) -> dict`` (the ``crm.<entity>.get`` JSON; ``RestError`` if missing)
* ``exists(entity, id)``, ``ids(entity)``, ``count(entity)``
* ``seed(entity, count, *, ctx=None, user_id=1) -> list[int]`` — deterministic records
* ``add_userfield(entity, name, user_type_id="string", ...) -> UserField``

``ctx`` is the caller (the REST request, or the control surface's UI context); the
caller finishes the request (``portal.events.finish_request(ctx)`` + the push). With
``ctx=None`` a write acts as UI user ``user_id`` (no app, no connector) and the request
is finished on the spot: queued firings are counted, ``onOfflineEvent`` notifications
go out and ``portal.pull.notify_offline(client_id, {connector: count})`` is called.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import connector.emulator.crm_methods  # noqa: F401  (registers crm.<entity>.* methods)
from connector.emulator.context import CallContext
from connector.emulator.crm_fields import (
    ENTITY_TYPES,
    EntityType,
    FieldDef,
    coerce,
    crm_error,
    render,
    semantic_of,
)
from connector.emulator.crm_userfields import USER_TYPES, UserField, normalise_name
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
from connector.emulator.multifields import MultiValue, apply_changes
from connector.emulator.rest_errors import RestError, not_found

if TYPE_CHECKING:
    from connector.emulator.portal import Portal

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


class CrmStore:
    """In-memory CRM of one portal (see the module docstring for the Python API)."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self._records: dict[str, dict[int, CrmRecord]] = {e: {} for e in ENTITY_TYPES}
        self._ids: dict[str, list[int]] = {e: [] for e in ENTITY_TYPES}
        """Every entity's record IDs, ascending (the index ``query`` bisects)."""
        self._next_id: dict[str, int] = dict.fromkeys(ENTITY_TYPES, 1)
        self._userfields: dict[str, dict[str, UserField]] = {e: {} for e in ENTITY_TYPES}
        self._next_multi_id = 1
        self._next_uf_id = 1
        self.empty_multi_in_lists = False
        """``True``: a list answer carries ``PHONE: []`` for a selected multi-field the
        record has no value in (as some portals answer) instead of leaving it out."""

    # ---- user fields -------------------------------------------------------------
    def add_userfield(
        self,
        entity: str,
        name: str,
        user_type_id: str = "string",
        *,
        multiple: bool = False,
        mandatory: bool = False,
        xml_id: str = "",
        sort: int = 100,
        label: str = "",
        items: list[dict[str, Any]] | None = None,
    ) -> UserField:
        """Define ``UF_CRM_*`` on an entity (``crm.<entity>.userfield.add``)."""
        etype = entity_type(entity)
        field_name = normalise_name(name)
        if user_type_id not in USER_TYPES:
            raise RestError("ERROR_CORE", f'Unknown USER_TYPE_ID "{user_type_id}"', 400)
        if field_name in self._userfields[etype.name]:
            raise RestError("ERROR_CORE", f'Field "{field_name}" already exists', 400)
        enum_items = []
        for n, item in enumerate(items or [], start=1):
            enum_items.append(
                {
                    "ID": self._next_uf_id * 100 + n,
                    "VALUE": str(item.get("VALUE")),
                    "SORT": int(item.get("SORT") or n * 10),
                    "DEF": "Y" if str(item.get("DEF") or "N") == "Y" else "N",
                    "XML_ID": str(item.get("XML_ID") or f"{field_name}_{n}"),
                }
            )
        uf = UserField(
            self._next_uf_id,
            etype.uf_entity_id,
            field_name,
            user_type_id,
            multiple,
            mandatory,
            xml_id,
            sort,
            label,
            enum_items,
        )
        self._next_uf_id += 1
        self._userfields[etype.name][field_name] = uf
        return uf

    def userfields(self, entity: str) -> list[UserField]:
        return sorted(self._userfields[entity_type(entity).name].values(), key=lambda u: u.id)

    def delete_userfield(self, entity: str, field_name: str) -> None:
        etype = entity_type(entity)
        self._userfields[etype.name].pop(field_name, None)
        for record in self._records[etype.name].values():
            record.uf.pop(field_name, None)

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

    # ---- writes ----------------------------------------------------------------------
    def _ui_context(self, user_id: int) -> CallContext:
        user = self.portal.users.get(user_id)
        return CallContext(client_id=None, user_id=user_id, is_admin=bool(user and user.is_admin))

    def _finish_ui(self, ctx: CallContext) -> None:
        counts = self.portal.events.finish_request(ctx)
        notify = getattr(self.portal.pull, "notify_offline", None)
        if callable(notify):
            for client_id, per_connector in counts.items():
                notify(client_id, per_connector)

    def _apply(
        self, etype: EntityType, record: CrmRecord, fields: dict[str, Any], *, creating: bool
    ) -> None:
        """Validate and write ``fields`` into ``record`` (all or nothing)."""
        values: dict[str, Any] = {}
        uf_values: dict[str, Any] = {}
        multi: dict[str, list[MultiValue]] = {}
        ufs = self._userfields[etype.name]
        for raw_name, raw in fields.items():
            name = str(raw_name).strip().upper()
            fdef: FieldDef | None = etype.fields.get(name)
            if fdef is not None:
                if fdef.type == "crm_multifield":
                    multi[name] = apply_changes(
                        name, multi.get(name, record.multi.get(name, [])), raw, self._take_multi_id
                    )
                elif fdef.read_only or (fdef.immutable and not creating):
                    continue
                else:
                    values[name] = coerce(fdef, raw)
            elif name in ufs:
                uf_values[name] = ufs[name].coerce(raw)
        merged = {**record.values, **values}
        for name, fdef in etype.fields.items():
            if fdef.required and merged.get(name) in (None, ""):
                raise crm_error(f'The field "{fdef.title}" is required.')
        merged_uf = {**record.uf, **uf_values}
        for name, uf in ufs.items():
            if uf.mandatory and merged_uf.get(name) in (None, "", []):
                raise crm_error(f'The field "{uf.label or name}" is required.')
        record.values = merged
        record.uf = merged_uf
        record.multi.update(multi)
        for name in [n for n, v in record.multi.items() if not v]:
            del record.multi[name]
        if "STAGE_ID" in etype.fields:
            record.values["CLOSED"] = "Y" if semantic_of(merged.get("STAGE_ID")) != "P" else "N"

    def _take_multi_id(self) -> int:
        value = self._next_multi_id
        self._next_multi_id += 1
        return value

    def add(
        self, ctx: CallContext | None, entity: str, fields: dict[str, Any], *, user_id: int = 1
    ) -> int:
        """Create a record as ``ctx`` (REST) or UI user ``user_id``; fires ``…ADD``."""
        etype = entity_type(entity)
        call = ctx or self._ui_context(user_id)
        record = CrmRecord(self._next_id[etype.name])
        record.values = dict(etype.defaults)
        record.values["ASSIGNED_BY_ID"] = call.user_id
        self._apply(etype, record, fields, creating=True)
        now = self.portal.clock.now()
        record.values.update(
            {
                "CREATED_BY_ID": call.user_id,
                "MODIFY_BY_ID": call.user_id,
                "DATE_CREATE": now,
                "DATE_MODIFY": now,
            }
        )
        if etype.default_title and not record.values.get("TITLE"):
            record.values["TITLE"] = etype.default_title.format(id=record.id)
        if etype.name == "contact" and not (
            record.values.get("NAME") or record.values.get("LAST_NAME")
        ):
            record.values["NAME"] = "Untitled"
        self._next_id[etype.name] += 1
        self._records[etype.name][record.id] = record
        insort(self._ids[etype.name], record.id)
        self._fire(call, etype, "ADD", record.id)
        if ctx is None:
            self._finish_ui(call)
        return record.id

    def update(
        self,
        ctx: CallContext | None,
        entity: str,
        entity_id: int,
        fields: dict[str, Any],
        *,
        user_id: int = 1,
    ) -> None:
        """Change a record; fires ``…UPDATE`` (even when nothing changed)."""
        etype = entity_type(entity)
        call = ctx or self._ui_context(user_id)
        record = self._record(etype, entity_id)
        self._apply(etype, record, fields, creating=False)
        if "IS_NEW" in etype.fields:
            record.values["IS_NEW"] = "N"
        record.values.update({"MODIFY_BY_ID": call.user_id, "DATE_MODIFY": self.portal.clock.now()})
        self._fire(call, etype, "UPDATE", record.id)
        if ctx is None:
            self._finish_ui(call)

    def delete(
        self, ctx: CallContext | None, entity: str, entity_id: int, *, user_id: int = 1
    ) -> None:
        """Remove a record; fires ``…DELETE``."""
        etype = entity_type(entity)
        call = ctx or self._ui_context(user_id)
        record = self._record(etype, entity_id)
        del self._records[etype.name][record.id]
        ids = self._ids[etype.name]
        del ids[bisect_left(ids, record.id)]
        self._fire(call, etype, "DELETE", record.id)
        if ctx is None:
            self._finish_ui(call)

    def _fire(self, ctx: CallContext, etype: EntityType, action: str, entity_id: int) -> None:
        self.portal.events.fire(ctx, etype.event(action), {"FIELDS": {"ID": entity_id}})

    def seed(
        self, entity: str, count: int, *, user_id: int = 1, ctx: CallContext | None = None
    ) -> list[int]:
        """Add ``count`` deterministic records (numbered after the existing ones)."""
        etype = entity_type(entity)
        ids = []
        for _ in range(count):
            n = self._next_id[etype.name]
            ids.append(self.add(ctx, etype.name, seed_fields(etype, n), user_id=user_id))
        return ids

    def describe_fields(self, entity: str) -> dict[str, Any]:
        """The ``crm.<entity>.fields`` answer."""
        etype = entity_type(entity)
        info = {name: f.describe() for name, f in etype.fields.items()}
        info.update({name: uf.describe() for name, uf in self._userfields[etype.name].items()})
        return info


def seed_fields(etype: EntityType, n: int) -> dict[str, Any]:
    """Deterministic field values for record number ``n`` of an entity."""
    tag = f"{n:04d}"
    fields: dict[str, Any] = {"COMMENTS": f"Seeded {etype.name} {tag}"}
    if "TITLE" in etype.fields:
        fields["TITLE"] = f"{etype.name.capitalize()} {tag}"
    if "NAME" in etype.fields:
        fields["NAME"] = f"Name{tag}"
        fields["LAST_NAME"] = f"Surname{tag}"
    if "PHONE" in etype.fields:
        fields["PHONE"] = [
            {"VALUE": f"+7 900 000-{n // 100 % 100:02d}-{n % 100:02d}", "VALUE_TYPE": "WORK"}
        ]
        fields["EMAIL"] = [{"VALUE": f"{etype.name}{tag}@example.test", "VALUE_TYPE": "WORK"}]
    if etype.name == "deal":
        fields["OPPORTUNITY"] = 1000 + n
    return fields
