"""The REST methods crm.{lead,contact,company,deal}.{add,update,get,list,delete,fields}.

Thin wrappers over ``portal.crm`` (:class:`connector.emulator.crm.CrmStore`): they read
``id`` / ``fields`` / ``filter`` / ``order`` / ``select`` / ``start`` (any case), pass the
request's :class:`CallContext` so writes fire their events as the caller, and shape the
answer: ``add`` → the new integer ID, ``update``/``delete`` → ``true``, ``list`` → 50 rows
with ``total``/``next`` (none with ``start=-1``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.emulator.crm_fields import ENTITY_TYPES, crm_error
from connector.emulator.offline_queue import php_int
from connector.emulator.registry import MethodResult, registry

if TYPE_CHECKING:
    from connector.emulator.context import CallContext
    from connector.emulator.portal_view import PortalView

PAGE_SIZE = 50


def _upper(params: dict[str, Any]) -> dict[str, Any]:
    return {str(k).upper(): v for k, v in params.items()}


def _id_param(params: dict[str, Any]) -> int:
    entity_id = php_int(_upper(params).get("ID"))
    if entity_id <= 0:
        raise crm_error("ID is not defined or invalid.")
    return entity_id


def _fields_param(params: dict[str, Any]) -> dict[str, Any]:
    fields = _upper(params).get("FIELDS")
    if not isinstance(fields, dict):
        raise crm_error("The parameter 'fields' must be an array.")
    return fields


def _register(entity: str) -> None:
    prefix = f"crm.{entity}"

    def add(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        return MethodResult(portal.crm.add(ctx, entity, _fields_param(params)))

    def update(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        entity_id = _id_param(params)
        portal.crm.update(ctx, entity, entity_id, _fields_param(params))
        return MethodResult(True)

    def get(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        return MethodResult(portal.crm.get(entity, _id_param(params)))

    def delete(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        portal.crm.delete(ctx, entity, _id_param(params))
        return MethodResult(True)

    def fields(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        return MethodResult(portal.crm.describe_fields(entity))

    def list_(portal: PortalView, ctx: CallContext, params: dict[str, Any]) -> MethodResult:
        query = _upper(params)
        start = php_int(query.get("START"))
        rows, total = portal.crm.query(
            entity,
            filter=query.get("FILTER"),
            order=query.get("ORDER"),
            select=query.get("SELECT"),
            start=start,
        )
        if total is None:
            return MethodResult(rows)
        nxt = start + PAGE_SIZE if start + PAGE_SIZE < total else None
        return MethodResult(rows, total=total, next=nxt)

    registry.method(f"{prefix}.add", scope="crm")(add)
    registry.method(f"{prefix}.update", scope="crm")(update)
    registry.method(f"{prefix}.get", scope="crm")(get)
    registry.method(f"{prefix}.delete", scope="crm")(delete)
    registry.method(f"{prefix}.fields", scope="crm")(fields)
    registry.method(f"{prefix}.list", scope="crm")(list_)


for _entity in ENTITY_TYPES:
    _register(_entity)
