"""The CRM store behind crm.{lead,contact,company,deal}.* (methods in ``crm_methods``).

:class:`CrmStore` holds the records in memory and does the writes; the reads (the ID
index, ``get``, ``query`` for ``list``, rendering) are its mixin ``crm_query.CrmQueries``.
Every write fires ``ONCRM<ENTITY>ADD/UPDATE/DELETE`` with ``{"FIELDS": {"ID": <int>}}``
through ``portal.events`` under the caller's :class:`CallContext` (REST) or a simulated
UI user.

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

from bisect import bisect_left, insort
from typing import TYPE_CHECKING, Any

from connector.emulator.context import CallContext
from connector.emulator.crm_fields import (
    ENTITY_TYPES,
    EntityType,
    FieldDef,
    coerce,
    crm_error,
    semantic_of,
)
from connector.emulator.crm_query import PAGE_SIZE, CrmQueries, CrmRecord, entity_type
from connector.emulator.crm_userfields import USER_TYPES, UserField, normalise_name
from connector.emulator.multifields import MultiValue, apply_changes
from connector.emulator.rest_errors import RestError

if TYPE_CHECKING:
    from connector.emulator.portal_contract import PortalContract

__all__ = ["PAGE_SIZE", "CrmRecord", "CrmStore", "entity_type", "seed_fields"]


class CrmStore(CrmQueries):
    """In-memory CRM of one portal (see the module docstring for the Python API); the
    reads (``get``, ``query``, ``exists``, ``ids``, ``count``) are in :class:`CrmQueries`."""

    def __init__(self, portal: PortalContract) -> None:
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
