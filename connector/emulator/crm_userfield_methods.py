"""The REST methods ``crm.<entity>.userfield.{add,list,get,update,delete}``.

Thin wrappers over ``portal.crm`` (``CrmStore.add_userfield``, ``userfields``,
``delete_userfield``); the field definitions and value shapes are in ``crm_userfields``.
``add`` reads ``fields{FIELD_NAME, USER_TYPE_ID, MULTIPLE, MANDATORY, LIST, XML_ID, SORT,
EDIT_FORM_LABEL}`` and answers the new ID; ``update`` changes ``MANDATORY``,
``EDIT_FORM_LABEL`` and ``XML_ID``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.emulator.crm_fields import ENTITY_TYPES, crm_error
from connector.emulator.crm_userfields import UserField
from connector.emulator.filter_ops import as_list
from connector.emulator.registry import MethodResult, registry
from connector.emulator.rest_errors import not_found

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_view import PortalView


def _upper(params: dict[str, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


def _register(entity: str) -> None:
    prefix = f"crm.{entity}.userfield"

    def add(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        fields = _upper(params).get("FIELDS")
        if not isinstance(fields, dict):
            raise crm_error("The parameter 'fields' must be an array.")
        fields = _upper(fields)
        uf = portal.crm.add_userfield(
            entity,
            str(fields.get("FIELD_NAME") or ""),
            str(fields.get("USER_TYPE_ID") or ""),
            multiple=str(fields.get("MULTIPLE") or "N").upper() in ("Y", "1"),
            mandatory=str(fields.get("MANDATORY") or "N").upper() in ("Y", "1"),
            xml_id=str(fields.get("XML_ID") or ""),
            sort=int(fields.get("SORT") or 100),
            label=str(fields.get("EDIT_FORM_LABEL") or fields.get("LIST_COLUMN_LABEL") or ""),
            items=[
                {str(k).upper(): v for k, v in i.items()}
                for i in as_list(fields.get("LIST") or [])
                if isinstance(i, dict)
            ],
        )
        return MethodResult(uf.id)

    def list_(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        return MethodResult([uf.as_row() for uf in portal.crm.userfields(entity)])

    def _find(portal: PortalView, params: dict[str, Any]) -> UserField:
        raw = _upper(params).get("ID")
        wanted = str(raw or "").strip()
        for uf in portal.crm.userfields(entity):
            if str(uf.id) == wanted:
                return uf
        raise not_found()

    def get(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        return MethodResult(_find(portal, params).as_row())

    def update(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        uf = _find(portal, params)
        fields = _upper(params).get("FIELDS")
        if isinstance(fields, dict):
            fields = _upper(fields)
            if "MANDATORY" in fields:
                uf.mandatory = str(fields["MANDATORY"]).upper() in ("Y", "1")
            if "EDIT_FORM_LABEL" in fields:
                uf.label = str(fields["EDIT_FORM_LABEL"])
            if "XML_ID" in fields:
                uf.xml_id = str(fields["XML_ID"])
        return MethodResult(True)

    def delete(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        uf = _find(portal, params)
        portal.crm.delete_userfield(entity, uf.field_name)
        return MethodResult(True)

    registry.method(f"{prefix}.add", scope="crm")(add)
    registry.method(f"{prefix}.list", scope="crm")(list_)
    registry.method(f"{prefix}.get", scope="crm")(get)
    registry.method(f"{prefix}.update", scope="crm")(update)
    registry.method(f"{prefix}.delete", scope="crm")(delete)


for _entity in ENTITY_TYPES:
    _register(_entity)
